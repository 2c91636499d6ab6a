"""Shared helpers of the fault drills (bench/drills/*.py): the backing servers, the stack, load, the tally.

A drill starts Postgres/Redis access (`Backing`), migrates a database of its own, starts the stack (`Stack`: the
fake provider, the web app served as docs/operations.md says, a Celery worker and beat), drives load (`Load`:
chat turns through the web app and /v1 calls, every outcome recorded), does its damage, then prints figures
(`tally`, `print_figures`). Nothing here passes or fails: a drill prints what happened.

Backing servers:
- default: the machine's Postgres and Redis (127.0.0.1:5432 / :6379). A drill really restarts them
  (`pg_ctlcluster 15 main restart`, `service redis-server restart`), so every other user of them feels it.
  The drill's own database (`kc_drill` by default) is dropped and created again, and its Redis db is flushed.
- `--embedded`: throwaway servers under `--var-dir` (scripts/services.py starts them), restarted by signal on
  the same port. Use this while developing a drill.

Stable interface (other drills import these): `arg_parser`, `Backing`, `Stack`, `Fixture` / `make_fixture`,
`Load`, `api_call`, `chat_turn`, `wait_back`, `wait_turns_finished`, `tally`, `print_figures`.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
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


# --- people, keys, conversations --------------------------------------------------------------------------------


@dataclass
class Fixture:
    tenant_id: int
    user_id: int
    api_key: str
    session_key: str
    csrf: str = "drillcsrf0123456789abcdef0123456"
    conversations: list[int] = field(default_factory=list)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_conversation(self) -> int:
        with self._lock:
            cid = self.conversations[self._next % len(self.conversations)]
            self._next += 1
            return cid

    def cookies(self) -> dict[str, str]:
        return {"sessionid": self.session_key, "csrftoken": self.csrf}

    def chat_headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.csrf, "HX-Request": "true"}


def django_setup(stack: Stack) -> None:
    """Django in the drill's own process, on the drill's database (for the fixture and the tally)."""
    global _database_url
    _database_url = stack.backing.database_url
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG"):
        os.environ[name] = stack.env[name]
    import django

    django.setup()


def make_fixture(stack: Stack, *, conversations: int = 2000, tier: str = "auto") -> Fixture:
    """One tenant on the Enterprise plan, its admin with a session and an API key, and `conversations` empty
    conversations (one per chat turn: a conversation answers one turn at a time)."""
    django_setup(stack)
    from django.contrib.sessions.backends.cached_db import SessionStore

    from conversations.models import Conversation
    from tenants.models import Membership, Plan, Tenant, User
    from tenants.services import api_key_create

    plan = Plan.objects.get(slug="enterprise")
    tenant = Tenant.objects.create(slug="drill", name="Drill", plan=plan)
    user = User.objects.create_user(email="drill@kiwiclaw.test", password="drill-password-0123")
    Membership.objects.create(user=user, tenant=tenant, role="admin")
    _key, secret = api_key_create(tenant=tenant, name="drill", created_by=user)
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session["tenant_id"] = tenant.pk
    session.create()
    convs = Conversation.objects.bulk_create(
        [Conversation(tenant=tenant, owner=user, tier=tier, title=f"drill {i}") for i in range(conversations)])
    from django.db import connection

    connection.close()
    return Fixture(tenant_id=tenant.pk, user_id=user.pk, api_key=secret, session_key=session.session_key,
                   conversations=[c.pk for c in convs])


# --- load -------------------------------------------------------------------------------------------------------

ASSISTANT = re.compile(r'id="msg-(\d+)" class="msg msg-assistant"')


def api_call(client: httpx.Client, fixture: Fixture, *, stream: bool, timeout: float = 30.0) -> tuple[str, str]:
    """One /v1/chat/completions call. Returns (outcome, request id): outcome "ok" for a complete answer (JSON
    with usage, or a stream ending in [DONE]), else "http <status>" or the exception's name."""
    body = {"model": "auto", "stream": stream, "messages": [{"role": "user", "content": "drill: tell me a story"}]}
    headers = {"Authorization": f"Bearer {fixture.api_key}"}
    try:
        if stream:
            with client.stream("POST", "/v1/chat/completions", json=body, headers=headers, timeout=timeout) as r:
                rid = r.headers.get("x-request-id", "")
                text = "".join(r.iter_text())
                if r.status_code != 200:
                    return f"http {r.status_code}", rid
                return ("ok" if "data: [DONE]" in text else "cut short"), rid
        r = client.post("/v1/chat/completions", json=body, headers=headers, timeout=timeout)
        rid = r.headers.get("x-request-id", "")
        if r.status_code != 200:
            return f"http {r.status_code}", rid
        return ("ok" if r.json().get("usage") else "no usage"), rid
    except httpx.HTTPError as exc:
        return type(exc).__name__, ""


def chat_turn(client: httpx.Client, fixture: Fixture, conversation_id: int, *, timeout: float = 30.0
              ) -> tuple[str, int | None]:
    """POST one chat message as the browser's HTMX form does. Returns (outcome, assistant message id)."""
    try:
        r = client.post(f"/chat/{conversation_id}/messages/", data={"text": "drill: tell me a story"},
                        headers=fixture.chat_headers(), cookies=fixture.cookies(), timeout=timeout)
    except httpx.HTTPError as exc:
        return type(exc).__name__, None
    if r.status_code != 200:
        return f"http {r.status_code}", None
    match = ASSISTANT.search(r.text)
    return ("ok", int(match[1])) if match else ("no message", None)


def page(client: httpx.Client, fixture: Fixture, path: str = "/chat/", timeout: float = 10.0) -> str:
    try:
        r = client.get(path, cookies=fixture.cookies(), timeout=timeout)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return "ok" if r.status_code == 200 else f"http {r.status_code}"


@dataclass
class Outcome:
    at: float  # monotonic
    kind: str  # "api", "api-stream", "chat", "page"
    outcome: str
    ident: str | int | None


class Load:
    """Chat turns and /v1 calls from threads, each sending its next request as soon as the last one ended (chat
    clients pace themselves: one turn every `chat_interval` seconds, on a fresh conversation)."""

    def __init__(self, web_url: str, fixture: Fixture, *, api_clients: int = 4, chat_clients: int = 4,
                 chat_interval: float = 1.0):
        self.web_url = web_url
        self.fixture = fixture
        self.api_clients = api_clients
        self.chat_clients = chat_clients
        self.chat_interval = chat_interval
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _record(self, kind, outcome, ident):
        with self._lock:
            self.outcomes.append(Outcome(time.monotonic(), kind, outcome, ident))

    def _api(self, i: int):
        with httpx.Client(base_url=self.web_url) as client:
            n = 0
            while not self._stop.is_set():
                stream = n % 2 == 1
                outcome, rid = api_call(client, self.fixture, stream=stream)
                self._record("api-stream" if stream else "api", outcome, rid)
                n += 1
                if outcome != "ok":
                    self._stop.wait(0.1)

    def _chat(self, i: int):
        with httpx.Client(base_url=self.web_url) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                outcome, mid = chat_turn(client, self.fixture, self.fixture.next_conversation())
                self._record("chat", outcome, mid)
                self._stop.wait(max(0.0, self.chat_interval - (time.monotonic() - started)))

    def start(self) -> Load:
        for i in range(self.api_clients):
            self._threads.append(threading.Thread(target=self._api, args=(i,), daemon=True))
        for i in range(self.chat_clients):
            self._threads.append(threading.Thread(target=self._chat, args=(i,), daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def since(self, t: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.at >= t]


def wait_back(web_url: str, fixture: Fixture, since: float, timeout: float = 120.0,
              turn_timeout: float = 60.0) -> dict[str, float | None]:
    """Seconds from `since` (a monotonic time: the server came back) until each of a page, a /v1 call and a
    chat turn first succeeds (a turn: posted, then done). None for one that never did within `timeout`."""
    back: dict[str, float | None] = {"page": None, "v1": None, "chat": None}
    deadline = since + timeout
    with httpx.Client(base_url=web_url) as client:
        while time.monotonic() < deadline and None in back.values():
            if back["page"] is None and page(client, fixture) == "ok":
                back["page"] = time.monotonic() - since
            if back["v1"] is None and api_call(client, fixture, stream=False, timeout=10)[0] == "ok":
                back["v1"] = time.monotonic() - since
            if back["chat"] is None:
                outcome, mid = chat_turn(client, fixture, fixture.next_conversation(), timeout=10)
                if outcome == "ok":
                    # Back once a worker has taken the turn and it answers (not when the send was accepted: the
                    # worker's broker connection may still be coming back); the answer's own length not counted.
                    started = _wait_message(mid, turn_timeout, until=("streaming", "done"))
                    if started is not None and _wait_message(mid, turn_timeout) == "done":
                        back["chat"] = started - since
            time.sleep(0.1)
    return back


_database_url = ""  # set by django_setup: the tally reads with plain psycopg, not through the code under test


def _pg(query: str, params=()) -> list[tuple]:
    with psycopg.connect(_database_url, connect_timeout=5) as conn:
        return conn.execute(query, params).fetchall()


def _wait_message(message_id: int, timeout: float, until=None):
    """Poll the message's status until it has ended (returns the status), or with `until` (statuses) until it
    reaches one of them (returns the monotonic time it was seen); None at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rows = _pg("SELECT status FROM conversations_message WHERE id = %s", [message_id])
        except Exception:  # noqa: BLE001 - the database may still be coming back
            rows = []
        if rows and until is not None and rows[0][0] in until:
            return time.monotonic()
        if rows and until is None and rows[0][0] in ("done", "failed", "cancelled"):
            return rows[0][0]
        time.sleep(0.05)
    return None


def wait_turns_finished(fixture: Fixture, timeout: float = 180.0) -> int:
    """Wait until the tenant has no queued or streaming turn (or the deadline); returns how many are left."""
    deadline = time.monotonic() + timeout
    left = -1
    while time.monotonic() < deadline:
        try:
            left = _pg("SELECT count(*) FROM conversations_message WHERE tenant_id = %s AND role = 'assistant' "
                       "AND status IN ('queued', 'streaming')", [fixture.tenant_id])[0][0]
        except Exception:  # noqa: BLE001
            left = -1
        if left == 0:
            return 0
        time.sleep(0.5)
    return left


def tally(fixture: Fixture, load_outcomes: list[Outcome], *, settle: float = 5.0) -> dict[str, object]:
    """The figures every drill prints: answers served (complete /v1 answers and chat turns done), usage rows,
    answers without exactly one usage row, double charges, turns by state and turns unfinished.

    A /v1 answer is matched to its row by the request id (`api:<id>`), a chat turn by its message
    (`chat:<id>`); the ledger's unique key makes two rows under one key impossible, so a double charge would
    show as a row whose key matches no answer of this drill, or as two rows for one message."""
    time.sleep(settle)  # rows are written just after answers end (and an outbox drains): let them land
    api_ok = [o.ident for o in load_outcomes if o.kind.startswith("api") and o.outcome == "ok"]
    rows = _pg("SELECT key FROM billing_usagerecord WHERE tenant_id = %s", [fixture.tenant_id])
    keys: dict[str, int] = {}
    for (key,) in rows:
        keys[key] = keys.get(key, 0) + 1
    turns = dict(_pg("SELECT status, count(*) FROM conversations_message WHERE tenant_id = %s "
                     "AND role = 'assistant' GROUP BY status", [fixture.tenant_id]))
    done_ids = [r[0] for r in _pg("SELECT id FROM conversations_message WHERE tenant_id = %s "
                                   "AND role = 'assistant' AND status = 'done'", [fixture.tenant_id])]
    answer_keys = [f"api:{rid}" for rid in api_ok] + [f"chat:{mid}" for mid in done_ids]
    unbilled = sum(1 for k in answer_keys if keys.get(k, 0) == 0)
    double = sum(1 for k in answer_keys if keys.get(k, 0) > 1)
    api_keys = {f"api:{rid}" for rid in api_ok}
    # A row for a /v1 call whose client saw no complete answer (cut short, or the client gave up) is billed
    # work, not a double charge; a double charge would be two rows for one answer.
    api_rows_without_answer = sum(1 for k in keys if k.startswith("api:") and k not in api_keys)
    unfinished = turns.get("queued", 0) + turns.get("streaming", 0)
    ended_ids = {f"chat:{r[0]}" for r in _pg("SELECT id FROM conversations_message WHERE tenant_id = %s AND "
                                             "role = 'assistant' AND status IN ('failed', 'cancelled')",
                                             [fixture.tenant_id])}
    estimated = _pg("SELECT count(*) FROM billing_usagerecord WHERE tenant_id = %s AND output_estimated",
                    [fixture.tenant_id])[0][0]
    failures: dict[str, int] = {}
    for o in load_outcomes:
        if o.outcome != "ok":
            failures[f"{o.kind} {o.outcome}"] = failures.get(f"{o.kind} {o.outcome}", 0) + 1
    return {
        "answers served (/v1 complete)": len(api_ok),
        "answers served (chat turns done)": len(done_ids),
        "usage rows": len(rows),
        "answers without exactly one usage row": unbilled + double,
        "  of which unbilled": unbilled,
        "double charges": double,
        "/v1 rows without a complete answer (cut short, billed)": api_rows_without_answer,
        "failed or stopped turns billed (what they generated)": sum(1 for k in keys if k in ended_ids),
        "usage rows with an estimated output count": estimated,
        "turns by state": turns,
        "turns done": turns.get("done", 0),
        "turns unfinished": unfinished,
        "requests refused or failed (by kind)": failures,
    }


def print_figures(title: str, figures: dict[str, object]) -> None:
    print(f"\n== {title} ==")
    for name, value in figures.items():
        if isinstance(value, float):
            value = f"{value:.2f}"
        print(f"  {name}: {value}")
    sys.stdout.flush()
