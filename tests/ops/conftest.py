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


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) from /proc/<pid>/stat, or None when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the command name in parentheses may contain spaces
    return int(fields[1]), fields[0], int(fields[19])


def process_tree(root: int) -> dict[int, tuple[int, str]]:
    """{pid: (start time, command line)} of root and all its live descendants.

    Servers that rewrite their process title (redis-server, Postgres' backends) also overwrite the memory
    /proc shows as their environment, so the marker alone does not find them; their parentage does.
    """
    children: dict[int, list[int]] = {}
    info = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat and stat[1] != "Z":
                children.setdefault(stat[0], []).append(int(entry.name))
                info[int(entry.name)] = stat[2]
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in info:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (FileNotFoundError, ProcessLookupError):
                continue
            tree[pid] = (info[pid], cmd.strip())
        todo.extend(children.get(pid, []))
    return tree


def still_alive(snapshot: dict[int, tuple[int, str]]) -> list[tuple[int, str]]:
    """The processes of a process_tree() snapshot that still exist (same pid and start time, not a zombie)."""
    left = []
    for pid, (started, cmd) in snapshot.items():
        stat = _stat(pid)
        if stat and stat[2] == started and stat[1] != "Z":
            left.append((pid, cmd))
    return left


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
