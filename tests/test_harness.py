"""The process harness (tests/harness.py): ports read back, logs drained, failures explained, nothing left running."""

import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.harness import (
    ProcessFailed,
    http_ready,
    listening_port,
    log_marks,
    log_sections,
    process_tree,
    start_process,
    still_alive,
)

# Listens on a port the kernel picks; says which only when asked to. Answers each connection with "hello".
SERVER = """
import socket, sys
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
if sys.argv[1:] == ["announce"]:
    print("serving on", sock.getsockname()[1], flush=True)
while True:
    conn, _ = sock.accept()
    conn.sendall(b"hello")
    conn.close()
"""

TINY_ASGI_APP = """
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"tiny"})
"""


def _greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.recv(5)


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def test_port_is_read_back_from_the_line_the_process_prints():
    with start_process(python(SERVER, "announce"), name="announcer", port_from=r"serving on (\d+)") as proc:
        assert proc.port and proc.port != 0
        assert _greeting(proc.port) == b"hello"


def test_port_is_read_back_from_the_kernel_when_the_process_does_not_say():
    with start_process(python(SERVER), name="silent", port_from=listening_port) as proc:
        assert proc.log_text() == ""
        assert _greeting(proc.port) == b"hello"


def test_granian_on_port_0_is_found_although_its_log_says_0(tmp_path):
    (tmp_path / "tiny.py").write_text(TINY_ASGI_APP)
    granian = str(Path(sys.executable).parent / "granian")
    argv = [granian, "--interface", "asgi", "--host", "127.0.0.1", "--port", "0", "--no-ws", "tiny:app"]
    with start_process(argv, name="granian", cwd=tmp_path, port_from=listening_port, ready=http_ready("/", 200)) as proc:
        assert httpx.get(proc.url, timeout=5).text == "tiny"
        assert "127.0.0.1:0" in proc.log_text()


def test_a_process_flooding_stdout_and_stderr_runs_to_the_end_and_keeps_only_the_tail():
    flood = """
import sys
for i in range(100_000):
    sys.stdout.write(f"out {i} " + "x" * 100 + "\\n")
    sys.stderr.write(f"err {i}\\n")
sys.stdout.write("y" * 100_000)  # one long line without a newline
print("\\ndone", flush=True)
"""
    with start_process(python(flood), name="flood", log_lines=500) as proc:
        # Undrained, it would block on the full pipe after about 64 kB and never exit.
        assert proc.wait(timeout=120) == 0
        lines = proc.log_text().splitlines()
    assert lines[-1] == "done"
    assert len(lines) == 500
    assert max(len(line) for line in lines) <= 8192


def test_a_process_that_dies_at_start_shows_its_log_tail_in_the_error():
    crash = "print('loading settings', flush=True); raise SystemExit('kaboom: DATABASE_URL is not set')"
    with pytest.raises(ProcessFailed) as failure:
        start_process(python(crash), name="crasher", port_from=listening_port, ready=http_ready())
    message = str(failure.value)
    assert "crasher" in message and "exited with code 1 before it was ready" in message
    assert "loading settings" in message and "kaboom: DATABASE_URL is not set" in message


def test_a_process_never_ready_is_stopped_at_the_deadline_with_its_log_tail():
    stuck = "import time; print('waiting for a database that never comes', flush=True); time.sleep(300)"
    with pytest.raises(ProcessFailed, match=r"(?s)was not ready within 2 s.*waiting for a database") as failure:
        start_process(python(stuck), name="stuck", ready=r"never printed", start_timeout=2)
    assert "stuck" in str(failure.value)


def test_stop_leaves_no_child_process_in_or_out_of_its_group():
    parent = """
import subprocess, time
same = subprocess.Popen(["sleep", "300"])
apart = subprocess.Popen(["sleep", "300"], start_new_session=True)
print("children", same.pid, apart.pid, flush=True)
time.sleep(300)
"""
    proc = start_process(python(parent), name="parent", ready=r"children \d+ \d+")
    tree = process_tree(proc.pid)
    assert len(tree) == 3
    proc.stop()
    assert still_alive(tree) == []


def test_a_process_ignoring_sigterm_is_killed_after_the_stop_deadline():
    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(300)"
    proc = start_process(python(deaf), name="deaf", ready="up", stop_timeout=2)
    assert proc.stop() == -9


def test_a_failed_test_is_shown_only_what_the_processes_logged_during_it(tmp_path):
    go = tmp_path / "go"
    script = """
import pathlib, sys, time
print("before the test", flush=True)
while not pathlib.Path(sys.argv[1]).exists():
    time.sleep(0.05)
print("during the test", flush=True)
time.sleep(300)
"""
    with start_process(python(script, str(go)), name="chatty", ready="before the test") as proc:
        marks = log_marks()
        go.touch()
        proc.wait_for_log("during the test", timeout=30)
        sections = dict(log_sections(marks))
    assert sections[f"Captured log of chatty (pid {proc.pid})"] == "during the test"


def test_wait_for_log_fails_with_the_tail_when_the_process_exits_first():
    with start_process(python("print('bye')"), name="brief") as proc:
        with pytest.raises(ProcessFailed, match=r"(?s)exited with code 0 before logging.*bye"):
            proc.wait_for_log("never printed", timeout=30)


def test_a_process_is_stopped_when_its_with_block_raises():
    with pytest.raises(RuntimeError, match="test body failed"):
        with start_process(["sh", "-c", "echo up; sleep 300"], name="sh", ready="up") as proc:
            tree = process_tree(proc.pid)
            raise RuntimeError("test body failed")
    assert still_alive(tree) == []
