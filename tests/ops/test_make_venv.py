"""scripts/make-venv.sh: a clear message when no Python 3.12 runs, and nothing created."""

import os
import subprocess

from tests.ops.conftest import BASE_DIR


def _make_venv(tmp_path, path_dirs, **env):
    return subprocess.run(
        ["bash", str(BASE_DIR / "scripts" / "make-venv.sh"), str(tmp_path / "venv")],
        env={"PATH": os.pathsep.join(path_dirs), **env},
        capture_output=True, text=True, timeout=60,
    )


def test_without_python_312_it_says_so_and_creates_nothing(tmp_path):
    # A `python3.12` that is really another version, as a broken pyenv shim would be, and no pyenv.
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    (shim_dir / "python3.12").write_text("#!/bin/sh\necho 'Python 3.11.7'\nexit 1\n")
    (shim_dir / "python3.12").chmod(0o755)

    result = _make_venv(tmp_path, [str(shim_dir), "/usr/bin", "/bin"])

    assert result.returncode == 1
    assert "needs Python 3.12 and none was found" in result.stderr
    assert "PYTHON=" in result.stderr  # says how to point at one
    assert not (tmp_path / "venv").exists()


def test_a_python_override_that_does_not_run_is_refused(tmp_path):
    result = _make_venv(tmp_path, ["/usr/bin", "/bin"], PYTHON=str(tmp_path / "no-such-python3.12"))

    assert result.returncode == 1
    assert "none was found at PYTHON=" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_an_existing_venv_on_another_python_is_not_silently_reused(tmp_path):
    fake_venv_bin = tmp_path / "venv" / "bin"
    fake_venv_bin.mkdir(parents=True)
    (fake_venv_bin / "python").write_text("#!/bin/sh\nexit 1\n")
    (fake_venv_bin / "python").chmod(0o755)

    result = _make_venv(tmp_path, ["/usr/bin", "/bin"])

    assert result.returncode == 1
    assert "does not run Python 3.12" in result.stderr
