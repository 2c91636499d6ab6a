"""Fixtures for the run-and-test tooling: processes started with a marker in their environment, so a test can
find every process they left behind, whatever process group or user it ended up in."""

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# Variables that would make the scripts use outside services or real providers instead of the embedded
# default, plus make's own, which a sub-make would inherit from `make test`.
OUTSIDE_ENV = (
    "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_DEBUG",
    "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "MOONSHOT_API_KEY", "MOONSHOT_BASE_URL",
    "MAKEFLAGS", "MAKELEVEL", "MFLAGS",
)


def free_port() -> int:
    """A port that was free a moment ago. Only for `make dev`, which must be told its ports: it cannot yet report
    what a port-0 bind got (its supervisor announces the number it was given, and exports the fake provider's URL
    before starting it), so these tests accept the small race of a port taken in between."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_with_marker(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment holds MARK=<marker>."""
    needle = f"KIWICLAW_TEST_MARK={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((int(entry.name), cmdline.strip()))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def wait_for_no_marked_processes(marker: str, timeout: float = 5.0) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while True:
        left = processes_with_marker(marker)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


class Marked:
    """An environment for a child process (embedded default: outside services stripped) with a unique marker."""

    def __init__(self):
        self.marker = uuid.uuid4().hex
        self.env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_ENV}
        self.env["KIWICLAW_TEST_MARK"] = self.marker

    def left(self, timeout: float = 5.0):
        return wait_for_no_marked_processes(self.marker, timeout)

    def kill_all(self):
        for pid, _ in processes_with_marker(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def marked():
    """Yields a Marked environment; whatever a test leaves running under it is killed afterwards."""
    m = Marked()
    yield m
    m.kill_all()


def run(argv, *, env, timeout=180, **kwargs):
    return subprocess.run(argv, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)
