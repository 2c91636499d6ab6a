"""One way to run a process a test needs: the fake provider, a web server, a Celery worker, `make dev`.

    with start_process([sys.executable, "-m", "uvicorn", "kiwiclaw.asgi:application", "--port", "0"],
                       name="proxy", port_from=listening_port, ready=http_ready("/v1/models", 401)) as server:
        httpx.get(f"{server.url}/v1/models")

What every process started here gets:

- **Port 0, read back from the process.** The kernel picks a free port inside the process that binds it, so two
  runs never race for one (picking a free port in the test, closing it and handing the number over leaves a gap
  in which another process can take it). The port is then learnt one of two ways:
    - `port_from=r"regex"`: from a line the process prints, the first group (or the one named `port`). The fake
      provider announces `FAKE_PROVIDER_URL http://127.0.0.1:PORT`, a contract of devtools/fake_provider/server.py.
    - `port_from=listening_port`: from the kernel, the one TCP socket in LISTEN state that the process or one of
      its descendants holds (/proc/PID/fd against /proc/PID/net/tcp{,6}). Used for the web servers: granian logs
      the `:0` it was given rather than the port it got, and uvicorn reports the port only at INFO log level and
      in wording that is not a contract. Handing the server a socket bound here (uvicorn `--fd`) was the other
      option; but uvicorn wraps such an fd as AF_UNIX, and on the plain asyncio loop the connections it accepts
      then miss TCP_NODELAY (asyncio sets it only on sockets it knows are TCP), which delays small SSE writes.
      Reading the kernel's table works for any server as launched.
  (`port_from=N` is for a process that can only be told its port: `make dev`, see tests/ops/conftest.py.)
- **Logs always drained.** stdout and stderr go to one pipe, read by a thread into a bounded buffer of lines, so
  a chatty process never blocks on a full pipe. A failed start raises `ProcessFailed` with the log's tail; a
  failed test gets the log written during it as a report section (the hooks in tests/conftest.py).
- **Readiness by polling with a deadline.** `ready` is a regex a log line must match, or a callable polled until
  it returns true (`http_ready`). No sleep stands in for readiness; the only waits are poll intervals.
- **A clean stop.** The process leads a session of its own; `stop()` sends `stop_signal` to its process group,
  waits with a deadline, then SIGKILLs what is left of the group and of the descendants that had left it (found
  through /proc before the signal). Used as a context manager or from a fixture's finalizer, nothing outlives
  the test.

Linux only (/proc), like the machines the suite runs on.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

POLL_INTERVAL = 0.05
# A line longer than this (a process writing without newlines) is cut into pieces of this size.
MAX_LINE_BYTES = 8192

PortSource = int | str | Callable[["ServiceProcess"], "int | None"]
Readiness = str | Callable[["ServiceProcess"], bool]


class ProcessFailed(RuntimeError):
    """A process exited or stalled before it was ready; the message ends with the tail of its log."""


class ServiceProcess:
    """A process started for a test. `start()` returns once it is ready; `stop()` is idempotent."""

    def __init__(
        self,
        argv: list[str],
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | Path = BASE_DIR,
        host: str = "127.0.0.1",
        port_from: PortSource | None = None,
        ready: Readiness | None = None,
        start_timeout: float = 30.0,
        stop_signal: int = signal.SIGTERM,
        stop_timeout: float = 10.0,
        log_lines: int = 2000,
    ):
        self.argv = [str(a) for a in argv]
        self.name = name or Path(self.argv[0]).name
        self.env = dict(os.environ if env is None else env)
        # Python children would otherwise block-buffer a pipe, and a crash would lose its last lines.
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.cwd = str(cwd)
        self.host = host
        self.port: int | None = None
        self._port_from = port_from
        self._ready = ready
        self.start_timeout = start_timeout
        self.stop_signal = stop_signal
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._lines: deque[str] = deque(maxlen=log_lines)
        self._count = 0  # lines read so far, including those the bounded buffer has dropped
        self._watches: dict[str, _Watch] = {}
        self._changed = threading.Condition()
        self._stopped = False

    def __repr__(self) -> str:
        return f"<ServiceProcess {self.name} pid={self.pid} port={self.port}>"

    # --- lifecycle ---

    def start(self) -> ServiceProcess:
        """Start the process and wait until it is ready; on failure it is stopped and ProcessFailed raised."""
        self._proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._drain, name=f"log of {self.name}", daemon=True)
        self._reader.start()
        _live.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        exited = False
        while True:
            if self.port is None and self._port_from is not None:
                self.port = self._read_port()
            if (self.port is not None or self._port_from is None) and self._is_ready():
                return
            if exited:
                raise ProcessFailed(self._failure(f"exited with code {self._proc.returncode} before it was ready"))
            if self._proc.poll() is not None:
                # Its last lines, read to the end, decide: a line it was waited for, or usually the reason it died.
                self._reader.join(timeout=2)
                exited = True
                continue
            if time.monotonic() > deadline:
                what = "ready" if self.port is not None or self._port_from is None else "listening"
                raise ProcessFailed(self._failure(f"was not {what} within {self.start_timeout:g} s"))
            with self._changed:
                self._changed.wait(POLL_INTERVAL)

    def _read_port(self) -> int | None:
        if isinstance(self._port_from, int):
            return self._port_from
        if isinstance(self._port_from, str):
            match = self.log_match(self._port_from)
            if match is None:
                return None
            return int(match.group("port") if "port" in match.re.groupindex else match.group(1))
        return self._port_from(self)

    def _is_ready(self) -> bool:
        if self._ready is None:
            return True
        if isinstance(self._ready, str):
            return self.log_match(self._ready) is not None
        return bool(self._ready(self))

    def stop(self) -> int | None:
        """Stop the process and everything it started; returns its exit code (None if never started)."""
        if self._proc is None:
            return None
        if not self._stopped:
            self._stopped = True
            _terminate(self._proc, self.stop_signal, self.stop_timeout)
            self._reader.join(timeout=5)
            _live.discard(self)
        return self._proc.returncode

    def __enter__(self) -> ServiceProcess:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- the process ---

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    @property
    def url(self) -> str:
        if self.port is None:
            raise ProcessFailed(f"{self.name} has no port")
        return f"http://{self.host}:{self.port}"

    def poll(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit (subprocess.TimeoutExpired after `timeout`), then for its log to be read
        to the end (bounded: a descendant may still hold the pipe)."""
        code = self._proc.wait(timeout)
        self._reader.join(timeout=5)
        return code

    # --- its log ---

    def _drain(self) -> None:
        pipe, partial = self._proc.stdout, b""
        try:
            while chunk := pipe.read1(65536):
                *lines, partial = (partial + chunk).split(b"\n")
                lines = [line[i:i + MAX_LINE_BYTES] for line in lines for i in range(0, len(line) or 1, MAX_LINE_BYTES)]
                while len(partial) > MAX_LINE_BYTES:
                    lines.append(partial[:MAX_LINE_BYTES])
                    partial = partial[MAX_LINE_BYTES:]
                self._add(lines)
            if partial:
                self._add([partial])
        except (OSError, ValueError):
            pass
        finally:
            # Closed here, not by stop(): closing a buffered pipe another thread is reading would wait for it.
            pipe.close()
            with self._changed:
                self._changed.notify_all()

    def _add(self, raw_lines: list[bytes]) -> None:
        lines = [raw.decode(errors="replace").rstrip("\r") for raw in raw_lines]
        with self._changed:
            for line in lines:
                self._lines.append(line)
                self._count += 1
                for watch in self._watches.values():
                    if watch.match is None:
                        watch.match = watch.regex.search(line)
            self._changed.notify_all()

    def log_match(self, pattern: str) -> re.Match | None:
        """The first log line matching `pattern` (re.search), or None yet. Once asked for, a pattern is checked
        against every line as it is read, so a match is not lost when the bounded buffer drops the line."""
        with self._changed:
            watch = self._watches.get(pattern)
            if watch is None:
                watch = self._watches[pattern] = _Watch(re.compile(pattern))
                watch.match = next(filter(None, map(watch.regex.search, self._lines)), None)
            return watch.match

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> re.Match:
        """Wait until a log line matches `pattern`; ProcessFailed with the log's tail if the process exits first
        or the deadline passes."""
        deadline = time.monotonic() + timeout
        while (match := self.log_match(pattern)) is None:
            if self._proc.poll() is not None and not self._reader.is_alive():
                raise ProcessFailed(self._failure(f"exited with code {self._proc.returncode} before logging {pattern!r}"))
            if time.monotonic() > deadline:
                raise ProcessFailed(self._failure(f"did not log {pattern!r} within {timeout:g} s"))
            with self._changed:
                self._changed.wait(POLL_INTERVAL)
        return match

    def log_text(self) -> str:
        """The buffered log (its last `log_lines` lines)."""
        with self._changed:
            return "\n".join(self._lines)

    def log_tail(self, lines: int = 60) -> str:
        with self._changed:
            return "\n".join(list(self._lines)[-lines:])

    @property
    def log_mark(self) -> int:
        """A position in the log, for `log_since`."""
        return self._count

    def log_since(self, mark: int) -> list[str]:
        """The lines read after `mark` that the buffer still holds."""
        with self._changed:
            new = self._count - mark
            return list(self._lines)[-new:] if new > 0 else []

    def _failure(self, what: str) -> str:
        return f"{self.name} ({' '.join(self.argv)}) {what}; its log ends:\n{self.log_tail() or '(empty)'}"


class _Watch:
    __slots__ = ("regex", "match")

    def __init__(self, regex: re.Pattern):
        self.regex = regex
        self.match: re.Match | None = None


def start_process(argv: list[str], **options) -> ServiceProcess:
    """Start a process and wait until it is ready (options: see ServiceProcess). Stop it with `.stop()`, or use
    it as a context manager."""
    return ServiceProcess(argv, **options).start()


# --- readiness and ports ---------------------------------------------------------------------------------------


def http_ready(path: str = "/", status: int | None = None, *, timeout: float = 1.0) -> Callable[[ServiceProcess], bool]:
    """Ready once GET `path` on the process's URL answers (with `status`, when given)."""
    import httpx

    def probe(proc: ServiceProcess) -> bool:
        try:
            # A bare connect first: refused is the common answer while starting, and cheaper than a client.
            socket.create_connection((proc.host, proc.port), timeout=timeout).close()
            response = httpx.get(f"{proc.url}{path}", timeout=timeout)
        except (OSError, httpx.HTTPError):
            return False
        return status is None or response.status_code == status

    return probe


def listening_port(proc: ServiceProcess) -> int | None:
    """The TCP port the process (or a descendant: a server's workers) listens on; None until it listens.
    ProcessFailed if it listens on more than one: give a log pattern instead."""
    ports = _listening_ports([proc.pid])
    if not ports:
        ports = _listening_ports(list(process_tree(proc.pid)))
    if len(ports) > 1:
        raise ProcessFailed(proc._failure(f"listens on several ports {sorted(ports)}; say which with a log pattern"))
    return ports.pop() if ports else None


def _listening_ports(pids: list[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    if not inodes:
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pids[0]}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the socket's inode.
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


# --- processes in /proc ----------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, str, int, int] | None:
    """(parent pid, state, process group, start time) from /proc/<pid>/stat, or None when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the command name in parentheses may contain spaces
    return int(fields[1]), fields[0], int(fields[2]), int(fields[19])


def _all_stats() -> dict[int, tuple[int, str, int, int]]:
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None and stat[1] != "Z":
            stats[int(entry.name)] = stat
    return stats


def process_tree(root: int) -> dict[int, tuple[int, str]]:
    """{pid: (start time, command line)} of root and all its live descendants, wherever their process group.

    Servers that rewrite their process title (redis-server, Postgres' backends) also overwrite the memory /proc
    shows as their environment, so an environment marker alone does not find them; their parentage does.
    """
    stats = _all_stats()
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat[0], []).append(pid)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (FileNotFoundError, ProcessLookupError):
                continue
            tree[pid] = (stats[pid][3], cmd.strip())
        todo.extend(children.get(pid, []))
    return tree


def still_alive(snapshot: dict[int, tuple[int, str]]) -> list[tuple[int, str]]:
    """The processes of a process_tree() snapshot that still exist (same pid and start time, not a zombie)."""
    left = []
    for pid, (started, cmd) in snapshot.items():
        stat = _stat(pid)
        if stat and stat[3] == started and stat[1] != "Z":
            left.append((pid, cmd))
    return left


def _group_members(pgid: int) -> dict[int, tuple[int, str]]:
    return {pid: (stat[3], "") for pid, stat in _all_stats().items() if stat[2] == pgid}


def _terminate(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    """`sig` to the process's group; once the leader and the group are gone, or `timeout` has passed, SIGKILL to
    what is left of the group and of the leader's descendants that had left it (they never got `sig`: stopping
    them was the leader's job). Reaps the leader; waits, with a deadline, until init has reaped the others."""
    pgid = proc.pid
    # A reaped leader's pid may be someone else's by now; its group's members are still ours.
    tree = process_tree(pgid) if proc.poll() is None else {}
    _signal(pgid, {}, sig)
    deadline = time.monotonic() + timeout
    _wait_gone(proc, lambda: _group_members(pgid), deadline)
    doomed = tree | _group_members(pgid)
    if proc.poll() is None or still_alive(doomed):
        _signal(pgid, doomed, signal.SIGKILL)
        _wait_gone(proc, lambda: doomed, time.monotonic() + timeout)


def _wait_gone(proc: subprocess.Popen, pids: Callable[[], dict[int, tuple[int, str]]], deadline: float) -> None:
    while (proc.poll() is None or still_alive(pids())) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)


def _signal(pgid: int, pids: dict[int, tuple[int, str]], sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    for pid, _ in still_alive(pids):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


# --- what a failed test shows ----------------------------------------------------------------------------------

_live: set[ServiceProcess] = set()


def stop_all() -> None:
    """Stop every process still running (at exit, in case a test's own cleanup never ran)."""
    for proc in list(_live):
        proc.stop()


atexit.register(stop_all)


def log_marks() -> dict[ServiceProcess, int]:
    """Where each running process's log stands now (taken when a test starts)."""
    return {proc: proc.log_mark for proc in list(_live)}


def log_sections(marks: dict[ServiceProcess, int], lines: int = 100) -> list[tuple[str, str]]:
    """(title, text) for each running process that logged since `marks`: its last `lines` lines since then. A
    process started after the marks were taken shows its log from the start."""
    sections = []
    for proc in sorted(_live, key=lambda p: p.pid or 0):
        new = proc.log_since(marks.get(proc, 0))[-lines:]
        if new:
            sections.append((f"Captured log of {proc.name} (pid {proc.pid})", "\n".join(new)))
    return sections
