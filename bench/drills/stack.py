"""The fault drills' servers: the backing Postgres and Redis (`Backing`) and the stack under test (`Stack`: the
fake provider, the web app served as docs/operations.md says, Celery worker(s) and beat). Drills import these
through `common`.

Backing servers:
- default: the machine's Postgres and Redis (127.0.0.1:5432 / :6379). A drill really restarts them
  (`pg_ctlcluster 15 main restart`, `service redis-server restart`), so every other user of them feels it.
  The drill's own database (`kc_drill` by default) is dropped and created again, and its Redis db is flushed.
- `--embedded`: throwaway servers under `--var-dir` (scripts/services.py starts them), restarted by signal on
  the same port. Use this while developing a drill.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from tests.harness import ServiceProcess, http_ready, listening_port  # noqa: E402

PYTHON = sys.executable
# The upstream models of the seeded catalog (routing/migrations/0002_seed_catalog.py).
UPSTREAM_MODELS = ("claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5", "kimi-k2.5")


def arg_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--embedded", action="store_true",
                        help="throwaway Postgres and Redis under --var-dir instead of the machine's")
    parser.add_argument("--var-dir", default=os.environ.get("KC_DRILL_VAR", str(ROOT / "var" / "drills")),
                        help="where the embedded servers and the processes' logs live")
    parser.add_argument("--database", default="kc_drill", help="the drill's database (dropped and created)")
    parser.add_argument("--redis-db", type=int, default=15, help="the drill's Redis db number (flushed)")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=40, help="tokens per answer from the fake provider")
    parser.add_argument("--delay-ms", type=int, default=25, help="the fake provider's delay between tokens")
    return parser


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# --- backing servers ------------------------------------------------------------------------------------------


class Backing:
    """The Postgres and Redis a drill uses, and how to stop, start and restart them."""

    def __init__(self, *, embedded: bool, var_dir: str | Path, database: str, redis_db: int):
        self.embedded = embedded
        self.var_dir = Path(var_dir)
        self.database = database
        self.redis_db = redis_db
        self._sup = None
        if embedded:
            from scripts.services import start_postgres, start_redis
            from scripts.supervisor import Supervisor

            self._sup = Supervisor(var_dir=self.var_dir, log_name="services.log")
            pg_url = start_postgres(self._sup, fast=True)
            redis_url = start_redis(self._sup, persist=False)
            self._pg_base = pg_url.rsplit("/", 1)[0]
            self._redis_base = redis_url.rsplit("/", 1)[0]
        else:
            self._pg_base = os.environ.get("DRILL_PG_URL", "postgres://postgres@127.0.0.1:5432")
            self._redis_base = os.environ.get("DRILL_REDIS_URL", "redis://127.0.0.1:6379")

    @property
    def database_url(self) -> str:
        return f"{self._pg_base}/{self.database}"

    @property
    def redis_url(self) -> str:
        return f"{self._redis_base}/{self.redis_db}"

    @property
    def admin_url(self) -> str:
        return f"{self._pg_base}/postgres"

    def reset(self) -> None:
        """Drop and create the drill's database, flush its Redis db."""
        import redis

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                         [self.database])
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}"')
            conn.execute(f'CREATE DATABASE "{self.database}"')
        client = redis.Redis.from_url(self.redis_url)
        client.flushdb()
        client.close()

    # Postgres
    def postgres_ready(self) -> bool:
        try:
            with psycopg.connect(self.database_url, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def stop_postgres(self) -> None:
        if self.embedded:
            self._stop_child("postgres")
        else:
            subprocess.run(["pg_ctlcluster", "15", "main", "stop", "-m", "fast"], check=True)

    def start_postgres(self) -> None:
        if self.embedded:
            self._start_child("postgres")
        else:
            subprocess.run(["pg_ctlcluster", "15", "main", "start"], check=True)
        wait_until(self.postgres_ready, 60, "Postgres to accept connections")

    # Redis
    def redis_ready(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop_redis(self) -> None:
        if self.embedded:
            self._stop_child("redis")
        else:
            subprocess.run(["service", "redis-server", "stop"], check=True)

    def start_redis(self) -> None:
        if self.embedded:
            self._start_child("redis")
        else:
            subprocess.run(["service", "redis-server", "start"], check=True)
        wait_until(self.redis_ready, 60, "Redis to answer")

    def _stop_child(self, name: str) -> None:
        child = next(c for c in self._sup.infra if c.name == name)
        child.signal_group(child.stop_signal)
        self._sup._wait_groups([child])

    def _start_child(self, name: str) -> None:
        """The same server again, same argv (so the same port and data directory)."""
        old = next(c for c in self._sup.infra if c.name == name)
        self._sup.infra.remove(old)
        user = "embedded_postgres" if name == "postgres" and os.geteuid() == 0 else None
        self._sup.start(name, old.proc.args, infra=True, stop_signal=old.stop_signal, user=user)

    def close(self) -> None:
        if self._sup is not None:
            self._sup.stop_all()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


# --- the stack ------------------------------------------------------------------------------------------------


class Stack:
    """The fake provider, the web app (granian, as docs/operations.md serves it), Celery worker(s) and beat."""

    def __init__(self, backing: Backing, *, web_workers: int = 2, worker_concurrency: int = 200,
                 extra_env: dict[str, str] | None = None):
        self.backing = backing
        self.web_workers = web_workers
        self.worker_concurrency = worker_concurrency
        self.fake: ServiceProcess | None = None
        self.web: ServiceProcess | None = None
        self.workers: list[ServiceProcess] = []
        self.beat: ServiceProcess | None = None
        self.env = dict(os.environ)
        self.env.update({
            "DATABASE_URL": backing.database_url,
            "REDIS_URL": backing.redis_url,
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "drill-only-secret-key-0123456789-0123456789-0123456789",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_SETTINGS_MODULE": "kiwiclaw.settings",
            # Dead workers' turns are found within seconds, not the production 20 s + 30 s.
            "CHAT_HEARTBEAT_INTERVAL": "1",
            "CHAT_HEARTBEAT_TTL": "5",
            "CHAT_SWEEP_INTERVAL": "2",
            "CHAT_QUEUED_RESCUE_AFTER": "15",
            "PYTHONUNBUFFERED": "1",
        })
        self.env.update(extra_env or {})

    def migrate(self) -> None:
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=self.env, check=True)
        # With DEBUG off, pages name their CSS and scripts through the static files manifest.
        subprocess.run([PYTHON, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=self.env,
                       check=True)

    def start_fake(self, *, tokens: int, delay_ms: int) -> str:
        self.fake = ServiceProcess([PYTHON, "-m", "devtools.fake_provider", "--port", "0"], name="fake provider",
                                   env=self.env, port_from=r"FAKE_PROVIDER_URL http://127\.0\.0\.1:(\d+)").start()
        url = self.fake.url
        self.env.update({"ANTHROPIC_BASE_URL": url, "MOONSHOT_BASE_URL": f"{url}/v1",
                         "ANTHROPIC_API_KEY": "fake", "MOONSHOT_API_KEY": "fake"})
        self.scenario(tokens=tokens, delay_ms=delay_ms)
        return url

    def scenario(self, **options) -> None:
        """The same fake-provider scenario for every catalog model."""
        with httpx.Client(base_url=self.fake.url) as client:
            client.post("/_control/reset").raise_for_status()
            for model in UPSTREAM_MODELS:
                client.post("/_control/scenario", json={"model": model, **options}).raise_for_status()

    def start_web(self) -> str:
        from procs import server_command

        argv = server_command("granian", 0, self.web_workers)
        self.web = ServiceProcess(argv, name="web", env=self.env, port_from=listening_port,
                                  ready=http_ready("/healthz"), start_timeout=60).start()
        return self.web.url

    def start_worker(self) -> ServiceProcess:
        worker = ServiceProcess(
            [PYTHON, "-m", "celery", "-A", "kiwiclaw", "worker", "--pool", "threads", "--concurrency",
             str(self.worker_concurrency), "--loglevel", "INFO", "--without-gossip", "--without-mingle",
             "--without-heartbeat"],
            name=f"worker{len(self.workers) + 1}", env=self.env, ready=r"celery@\S+ ready\.", start_timeout=60,
            stop_timeout=20,
        ).start()
        self.workers.append(worker)
        return worker

    def kill_worker(self, worker: ServiceProcess) -> None:
        """SIGKILL the worker's whole process group: no shutdown, no acknowledgements, no final writes."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    def start_beat(self) -> ServiceProcess:
        schedule = self.backing.var_dir / "celerybeat-schedule"
        self.backing.var_dir.mkdir(parents=True, exist_ok=True)
        self.beat = ServiceProcess(
            [PYTHON, "-m", "celery", "-A", "kiwiclaw", "beat", "--loglevel", "INFO", "--schedule", str(schedule)],
            name="beat", env=self.env, ready=r"beat: Starting", start_timeout=60,
        ).start()
        return self.beat

    def start_all(self, *, tokens: int, delay_ms: int) -> None:
        self.migrate()
        self.start_fake(tokens=tokens, delay_ms=delay_ms)
        self.start_web()
        self.start_worker()
        self.start_beat()

    def stop(self) -> None:
        for proc in [self.beat, *self.workers, self.web, self.fake]:
            if proc is not None:
                proc.stop()

    def save_logs(self, name: str) -> Path:
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.log"
        with open(path, "w") as f:
            for proc in [self.web, *self.workers, self.beat, self.fake]:
                if proc is not None:
                    f.write(f"===== {proc.name} =====\n{proc.log_text()}\n")
        return path
