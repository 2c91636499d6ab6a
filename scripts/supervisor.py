"""The process supervisor behind `python -m scripts.services`: children in their own process groups, their
output prefixed and coloured, stopped in order (app processes first, then the backing servers), a group that
does not stop within the grace period killed together with what it left behind.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Seconds a process group gets to stop after SIGTERM/SIGINT before it is killed.
STOP_GRACE = float(os.environ.get("KIWICLAW_STOP_GRACE", "10"))
START_TIMEOUT = float(os.environ.get("KIWICLAW_START_TIMEOUT", "60"))

COLORS = ["36", "33", "35", "32", "34", "31", "96", "93"]


class Stopped(Exception):
    """A stop was requested (signal) or a process died while starting; the message says which."""


class Child:
    """One started process, in its own process group, whose output is printed line by line with a prefix."""

    def __init__(self, name, argv, *, env, out, stop_signal=signal.SIGTERM, user=None):
        self.name = name
        self.stop_signal = stop_signal
        self.proc = subprocess.Popen(
            [str(a) for a in argv],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
        )
        self.pgid = self.proc.pid  # start_new_session makes the child the leader of its own group
        self.reader = threading.Thread(target=out.pump, args=(name, self.proc.stdout), daemon=True)
        self.reader.start()

    def poll(self):
        return self.proc.poll()

    def signal_group(self, signum):
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            pass

    def group_alive(self) -> bool:
        """True while any process of the group exists: the leader may be gone and its children not."""
        self.proc.poll()  # reap an exited leader, which would otherwise still count as a (zombie) member
        try:
            os.killpg(self.pgid, 0)
            return True
        except ProcessLookupError:
            return False


class Output:
    """Prints `name | line` with a colour per name when stdout is a terminal (NO_COLOR turns colour off).

    With a log file, the children's lines go there instead: under run-tests, Postgres logging the errors that
    tests provoke on purpose would drown pytest's own output.
    """

    def __init__(self, log_path: Path | None = None):
        self.lock = threading.Lock()
        self.log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 - lives as long as we do
        self.use_color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        self.colors = {}
        self.palette = itertools.cycle(COLORS)
        self.width = 8

    def line(self, name, text, *, to_log=True):
        if self.log and to_log:
            with self.lock:
                self.log.write(f"{name:>{self.width}} | {text}\n")
            return
        if name not in self.colors:
            self.colors[name] = next(self.palette)
        prefix = f"{name:>{self.width}} |"
        if self.use_color:
            prefix = f"\033[{self.colors[name]}m{prefix}\033[0m"
        with self.lock:
            sys.stdout.write(f"{prefix} {text}\n")
            sys.stdout.flush()

    def pump(self, name, stream):
        for raw in iter(stream.readline, b""):
            self.line(name, raw.decode("utf-8", "replace").rstrip())
        stream.close()


class Supervisor:
    """Starts children, notices signals and deaths, and stops everything it started."""

    def __init__(self, *, var_dir: Path, log_name: str | None = None):
        self.var_dir = var_dir
        var_dir.mkdir(parents=True, exist_ok=True)
        self.out = Output(var_dir / log_name if log_name else None)
        self.env = dict(os.environ)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.children: list[Child] = []
        self.infra: list[Child] = []
        self.stop_requested = threading.Event()
        self.signals_seen = 0

    # --- signals ---
    def install_signal_handlers(self):
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame):
        self.signals_seen += 1
        if self.signals_seen == 1:
            self.say(f"{signal.Signals(signum).name} received: stopping everything (again to kill at once)")
        self.stop_requested.set()

    def say(self, text):
        self.out.line("services", text, to_log=False)

    # --- starting ---
    def start(self, name, argv, *, infra=False, **kwargs) -> Child:
        child = Child(name, argv, env=self.env, out=self.out, **kwargs)
        (self.infra if infra else self.children).append(child)
        return child

    def check(self):
        """Raises Stopped if a stop was requested or a long-running process died."""
        if self.stop_requested.is_set():
            raise Stopped("stop requested")
        for child in self.infra + self.children:
            code = child.poll()
            if code is not None:
                raise Stopped(f"{child.name} exited with code {code}")

    def run_step(self, name, argv, *, user=None):
        """Runs a one-shot command (initdb, migrate, seed_demo) to completion, still answering Ctrl-C."""
        child = Child(name, argv, env=self.env, out=self.out, user=user)
        while child.poll() is None:
            if self.stop_requested.wait(0.2):
                child.signal_group(signal.SIGTERM)
                self._wait_groups([child])
                raise Stopped("stop requested")
        child.reader.join(timeout=5)
        if child.proc.returncode != 0:
            raise Stopped(f"{name} failed with code {child.proc.returncode}")

    def wait_until(self, what, ready, *, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if ready():
                return
            self.stop_requested.wait(0.2)
        raise Stopped(f"{what} was not ready within {timeout:.0f}s")

    # --- stopping ---
    def stop_all(self):
        # Apps first, then the servers they talk to.
        self._stop_groups(list(reversed(self.children)))
        self._stop_groups(list(reversed(self.infra)))
        self.children, self.infra = [], []

    def _stop_groups(self, children):
        for child in children:
            child.signal_group(child.stop_signal)
        self._wait_groups(children)

    def _wait_groups(self, children):
        deadline = time.monotonic() + STOP_GRACE
        pending = list(children)
        while pending:
            pending = [c for c in pending if c.group_alive()]
            if not pending:
                break
            # A second Ctrl-C means "now"; otherwise wait out the grace period.
            if time.monotonic() > deadline or self.signals_seen > 1:
                for child in pending:
                    self.say(f"{child.name} did not stop in time: killing its process group")
                    child.signal_group(signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.1)
        for child in children:
            child.proc.wait()
            child.reader.join(timeout=2)


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the kernel's pick; the race with others is negligible)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
