"""Chat fixtures: conversations, a real Celery worker (in a thread, or a subprocess for SIGKILL), short timings,
and the browser tests' uvicorn, Chromium and logged-in page.

Integration tests run with `transactional_db`: the worker's threads use their own database connections, so
the test's data must be committed. The shared conftest re-seeds the default plans and model catalog that each
transactional test's flush removes.
"""

import os
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from conversations import services
from conversations.models import Conversation, Message
from tests.browser import launch_chromium
from tests.factories import DEMO_PASSWORD
from tests.harness import http_ready, listening_port, start_process

integration = pytest.mark.django_db(transaction=True)

ARTIFACTS = Path(django_settings.BASE_DIR) / "artifacts"
# The worker's and the chat server's timings: short, so tests never wait long (never a timing assertion).
CHAT_TIMINGS = {"CHAT_HEARTBEAT_INTERVAL": 0.2, "CHAT_HEARTBEAT_TTL": 1}
PROVIDER_ENV = ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "MOONSHOT_BASE_URL", "MOONSHOT_API_KEY")


@pytest.fixture(autouse=True)
def _plain_http(settings):
    # Production settings redirect HTTP to HTTPS; the test client speaks plain HTTP.
    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture
def chat_settings(settings):
    """Short timings so tests never wait long (never a timing assertion)."""
    for name, value in CHAT_TIMINGS.items():
        setattr(settings, name, value)
    settings.CHAT_SSE_BLOCK_MS = 100
    settings.CHAT_SSE_HEARTBEAT = 0.5
    settings.CHAT_SSE_DB_RECHECK = 1.0
    settings.CHAT_QUEUED_RESCUE_AFTER = 2
    settings.CHAT_STREAM_TTL = 60
    settings.ROUTING_BACKOFF_BASE_SECONDS = 0.01
    settings.ROUTING_BACKOFF_MAX_SECONDS = 0.05
    settings.ROUTING_DEADLINE_SECONDS = 5
    settings.ROUTING_CATALOG_TTL_SECONDS = 0
    return settings


@pytest.fixture
def chat_redis(db):
    """The chat's Redis keys cleared around a test. Only `kc:*`: the Celery broker shares this Redis db."""
    from conversations.streams import sync_redis
    from tenants import revocation

    client = sync_redis()

    def clear():
        keys = list(client.scan_iter("kc:*", count=1000))
        if keys:
            client.delete(*keys)

    clear()
    # A deployment's access flags are whole (tenants/revocation.py): rebuilt, as the first slow-path stream would.
    revocation.access_flags_ensure()
    yield client
    clear()


@pytest.fixture
def alice_chat(alice, acme):
    return services.conversation_create(tenant=acme, owner=alice, title="Alice's plans")


@pytest.fixture
def celery_worker(chat_settings, chat_redis):
    """A real Celery worker (thread pool) in a thread of the test process, on the test database."""
    from celery.contrib.testing.worker import start_worker

    from kiwiclaw.celery import app

    # Tasks already queued (sent before the worker started) are kept: a test may mean them.
    with start_worker(app, pool="threads", concurrency=16, perform_ping_check=False, loglevel="WARNING",
                      shutdown_timeout=20) as worker:
        yield worker
    _purge(app)
    _close_pool()


def _close_pool():
    """The worker's threads leave connections in the pool; close them so the test database can be dropped."""
    from django.db import connections

    close = getattr(connections["default"], "close_pool", None)
    if close is not None:
        close()


def _purge(app):
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")


def worker_subprocess_env(settings) -> dict:
    """Environment for a Celery worker subprocess pointed at the test database and the fake provider."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "DJANGO_SECRET_KEY": "test",
        "CHAT_HEARTBEAT_INTERVAL": str(settings.CHAT_HEARTBEAT_INTERVAL),
        "CHAT_HEARTBEAT_TTL": str(settings.CHAT_HEARTBEAT_TTL),
        "ROUTING_CATALOG_TTL_SECONDS": "0",
        "ANTHROPIC_BASE_URL": settings.ANTHROPIC_BASE_URL,
        "ANTHROPIC_API_KEY": settings.ANTHROPIC_API_KEY,
        "MOONSHOT_BASE_URL": settings.MOONSHOT_BASE_URL,
        "MOONSHOT_API_KEY": settings.MOONSHOT_API_KEY,
    })
    return env


@pytest.fixture
def worker_process(chat_settings, chat_redis, fake_provider):
    """Start Celery worker subprocesses on demand (tests/harness.py), each returned once it logs that it is ready
    and leading its own process group (so a test can SIGKILL it whole); stopped at teardown if still alive."""
    procs = []

    def start():
        # INFO: the worker says it is ready only at that level.
        proc = start_process(
            [sys.executable, "-m", "celery", "-A", "kiwiclaw", "worker", "--pool", "threads", "--concurrency", "8",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            name="celery worker", env=worker_subprocess_env(chat_settings), ready=r"celery@\S+ ready\.",
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()
    _close_pool()


def wait_for(predicate, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def wait_finished(message_id, timeout=20.0) -> Message:
    def finished():
        m = Message.objects.filter(pk=message_id).first()
        return m if m is not None and m.is_finished else None

    return wait_for(finished, timeout=timeout, what=f"message {message_id} to finish")


def stream_deltas(client, message_id) -> list[str]:
    from conversations.streams import stream_key

    return [f["v"] for _id, f in client.xrange(stream_key(message_id)) if f.get("t") == "d"]


@pytest.fixture(scope="module")
def chat_web_server(django_db_setup, fake_provider_server):
    """uvicorn on a loopback port (port 0, read back by tests/harness.py), serving the test database; one per
    test module (starting it is the slowest part of a browser test). Between tests the database is flushed
    and the chat's Redis keys cleared (`chat_redis`); the server caches no catalog (TTL 0) and keeps no state
    of its own that a test could see."""
    env = worker_subprocess_env(django_settings)
    env.update({name: os.environ[name] for name in PROVIDER_ENV})
    env.update({name: str(value) for name, value in CHAT_TIMINGS.items()})
    env.update({"DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1", "DJANGO_SECURE_SSL_REDIRECT": "0",
                "DJANGO_SECURE_HSTS_SECONDS": "0", "CHAT_SSE_BLOCK_MS": "200", "CHAT_SSE_HEARTBEAT": "2"})
    with start_process(
        [sys.executable, "-m", "uvicorn", "tests.chat.asgi_static:application", "--host", "127.0.0.1", "--port", "0",
         "--log-level", "info", "--no-access-log", "--timeout-graceful-shutdown", "2"],
        name="uvicorn (chat)", env=env, port_from=listening_port, ready=http_ready("/login/", 200),
    ) as server:
        yield server
    # A failing test shows the server's log (tests/conftest.py); a passing one still shows a traceback in it.
    log = server.log_text()
    if "Traceback" in log or "ERROR" in log:
        sys.stderr.write(f"uvicorn log:\n{log}\n")


@pytest.fixture
def asgi_server(chat_web_server, chat_settings, fake_provider):
    """The module's uvicorn, for a test with the fake provider reset and the short timings in place."""
    return f"http://localhost:{chat_web_server.port}"


@pytest.fixture(scope="module")
def browser():
    """Chromium for the module's tests (each page gets its own context). Playwright's sync API runs an event
    loop in this thread; the tests' own ORM calls are still plain sync (every test of a browser module is a
    browser test, so the loop running between them disturbs none)."""
    from playwright.sync_api import sync_playwright

    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        yield browser
        browser.close()
    if saved is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


@pytest.fixture
def open_page(request, browser, asgi_server, celery_worker):
    """A logged-in page factory; asserts no console error or page error at teardown and saves a screenshot."""
    pages, errors = [], []

    def open_as(user, viewport=None):
        context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("console", lambda msg: msg.type == "error" and not _is_favicon(msg) and errors.append(msg.text))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{asgi_server}/login/?next=/chat/")
        page.fill("input[name=username]", user.email)
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/chat/")
        pages.append(page)
        return page

    # A test that provokes a refusal on purpose names the browser's log line for it here (Chromium logs every 4xx
    # response as a console error); any other console error still fails the test.
    open_as.expected_errors = []
    yield open_as
    ARTIFACTS.mkdir(exist_ok=True)
    for i, page in enumerate(pages):
        page.screenshot(path=str(ARTIFACTS / f"chat-{request.node.name}-{i}.png"), full_page=True)
        page.context.close()  # the browser outlives the test: its pages' event streams end here
    assert [e for e in errors if not any(expected in e for expected in open_as.expected_errors)] == []


def _is_favicon(msg) -> bool:
    # The browser asks for /favicon.ico on its own; the site has none (not a chat page error).
    return (msg.location or {}).get("url", "").endswith("/favicon.ico")



__all__ = ["Conversation", "Message", "integration", "wait_for", "wait_finished", "stream_deltas"]


def parse_sse(raw: str) -> list[dict]:
    """The events of an SSE body: dicts of their fields, `data` lines joined with newlines; comments and the
    retry hint left out."""
    events = []
    for block in raw.split("\n\n"):
        if not block.strip() or block.startswith(":") or block.startswith("retry:"):
            continue
        event = {"data": []}
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "data":
                event["data"].append(value)
            else:
                event[field] = value
        event["data"] = "\n".join(event["data"])
        events.append(event)
    return events
