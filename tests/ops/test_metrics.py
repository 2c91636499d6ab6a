"""GET /metrics: closed to the public, and after real traffic it answers with every named series.

The traffic test runs the production shape: a uvicorn server with two worker processes (prometheus-client's
multiprocess mode, so a scrape in either worker sums both), a Celery worker subprocess running a chat turn, and
real HTTP to the fake provider, against the committed test database.
"""

import sys
import time
from decimal import Decimal

import httpx
import pytest
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from billing.models import UsageRecord
from conversations import services as chat
from conversations import sse
from conversations.models import Message
from tests.factories import UserFactory, make_api_key
from tests.harness import http_ready, listening_port, start_process

TOKEN = "metrics-token-for-tests-0123456789"
KIMI, HAIKU = "kimi-k2.5", "claude-haiku-4-5"


# --- who may read it ----------------------------------------------------------------------------------------


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.mark.django_db
def test_metrics_refuses_anonymous_callers_and_wrong_tokens(client, metrics_token, carol):
    assert client.get("/metrics").status_code == 403
    for auth in ("Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer "):
        response = client.get("/metrics", HTTP_AUTHORIZATION=auth)
        assert response.status_code == 403, auth
        assert b"kiwiclaw_" not in response.content
    client.force_login(carol)  # a tenant member, not staff
    assert client.get("/metrics").status_code == 403


@pytest.mark.django_db
def test_metrics_has_no_token_when_none_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer").status_code == 403


@pytest.mark.django_db
def test_metrics_answers_staff_sessions_and_the_token(client, metrics_token, redis_client):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert b"kiwiclaw_turns_in_flight" in response.content

    client.force_login(UserFactory(email="ops@kiwiclaw.test", is_staff=True))
    assert client.get("/metrics").status_code == 200


def test_route_label_names_the_url_pattern_not_the_path(db):
    from kiwiclaw.metrics import route_label

    assert route_label("/v1/chat/completions") == "proxy:chat-completions"
    assert route_label("/v1/models") == "proxy:models"
    assert route_label("/chat/12/messages/345/stream/") == "conversations:stream"
    assert route_label("/chat/13/messages/999/stream/") == "conversations:stream"
    assert route_label("/metrics") == "metrics"
    assert route_label("/static/css/app.css") == "static"
    assert route_label("/no/such/page/") == "unmatched"
    assert route_label("/api/conversations/") == "api:conversations"


def test_make_dev_gives_the_processes_an_empty_metrics_directory(tmp_path):
    from types import SimpleNamespace

    from scripts.services import prometheus_dir

    sup = SimpleNamespace(env={}, var_dir=tmp_path)
    first = prometheus_dir(sup)
    assert first == (tmp_path / "prometheus").resolve() and first.is_dir()
    (first / "histogram_123.db").write_bytes(b"stale")
    (first / "keep.txt").write_text("not ours")
    assert prometheus_dir(sup) == first
    assert sorted(p.name for p in first.iterdir()) == ["keep.txt"]  # an earlier run's counters are gone


# --- after real traffic ---------------------------------------------------------------------------------------


def _database_url() -> str:
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (f"postgres://{db.get('USER') or 'postgres'}{password}@{db.get('HOST') or '127.0.0.1'}:"
            f"{db.get('PORT') or 5432}/{db['NAME']}")


def _env(multiproc_dir) -> dict:
    import os

    env = {**os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": settings.REDIS_URL,
           "CELERY_BROKER_URL": settings.REDIS_URL, "DJANGO_SECRET_KEY": "test", "DJANGO_DEBUG": "0",
           "DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
           "METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir), "LOG_LEVEL": "WARNING",
           "METRICS_LEDGER_CACHE_SECONDS": "0",
           "ROUTING_RETRY_ATTEMPTS": "1", "ROUTING_BACKOFF_BASE_SECONDS": "0.01",
           "ROUTING_BACKOFF_MAX_SECONDS": "0.05", "ROUTING_CATALOG_TTL_SECONDS": "0"}
    env.pop("DJANGO_TEST_DATABASE", None)
    return env


@pytest.fixture
def served(transactional_db, fake_provider, redis_client, tmp_path):
    """uvicorn with two workers and a Celery worker, sharing one multiprocess directory."""
    from tests.conftest import reseed_default_rows

    reseed_default_rows()
    env = _env(tmp_path / "prometheus")
    web = start_process(
        [sys.executable, "-m", "uvicorn", "kiwiclaw.asgi:application", "--host", "127.0.0.1", "--port", "0",
         "--workers", "2", "--loop", "uvloop", "--http", "httptools", "--lifespan", "off", "--no-access-log"],
        name="web (2 workers)", env=env, port_from=listening_port, ready=http_ready("/v1/models", 401),
        start_timeout=60,
    )
    worker = None
    try:
        worker = start_process(
            [sys.executable, "-m", "celery", "-A", "kiwiclaw", "worker", "--pool", "threads", "--concurrency", "4",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            name="celery worker", env=env, ready=r"celery@\S+ ready\.", start_timeout=60,
        )
        yield web
    finally:
        for proc in (worker, web):
            if proc is not None:
                proc.stop()
        from django.db import connections

        close = getattr(connections["default"], "close_pool", None)
        if close is not None:
            close()
        from kiwiclaw.celery import app

        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge("celery")


def _wait(predicate, *, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _scrape(url: str) -> dict[str, list]:
    response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def _value(families, sample_name: str, **labels) -> float:
    family = families[sample_name.removesuffix("_total").removesuffix("_count")]
    found = [s.value for s in family if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (sample_name, labels, [s for s in family if s.name == sample_name])
    return found[0]


@pytest.mark.slow
def test_metrics_after_real_traffic_has_every_named_series(served, fake_provider, acme, alice):
    _key, secret = make_api_key(tenant=acme, user=alice)
    fake_provider.scenario(KIMI, status=500)  # the Auto chain's first endpoint fails: one fallback, to Haiku
    calls = 4
    with httpx.Client(base_url=served.url, timeout=30,
                      headers={"Authorization": f"Bearer {secret}"}) as http:
        for _i in range(calls):
            answer = http.post("/v1/chat/completions",
                               json={"model": "auto", "messages": [{"role": "user", "content": "hi there"}]})
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-kiwiclaw-fallback"] == "1"
    fake_provider.reset()
    families = _scrape(served.url)  # before the chat turn's success on Kimi closes its breaker again
    assert _value(families, "kiwiclaw_breaker_failures", endpoint=KIMI) == calls
    assert _value(families, "kiwiclaw_breaker_state", endpoint=KIMI, state="closed") == 1
    assert _value(families, "kiwiclaw_breaker_state", endpoint=HAIKU, state="open") == 0

    # A chat turn on the Celery worker, then its stream read through the SSE path.
    conversation = chat.conversation_create(tenant=acme, owner=alice, title="metrics")
    answer_id = chat.message_send(conversation=conversation, author=alice, text="What is a kiwi?").pk
    _wait(lambda: Message.objects.filter(pk=answer_id, status="done").exists(), what="the chat turn")
    browser = Client()
    browser.force_login(alice)
    session_key = browser.cookies[settings.SESSION_COOKIE_NAME].value
    token = sse.stream_token(session_key=session_key, tenant_id=acme.pk, user_id=alice.pk,
                             conversation_id=conversation.pk, message_id=answer_id)
    # Whichever of the fast path and Django's view answers it, the stream is labelled by its URL pattern.
    httpx.get(f"{served.url}/chat/{conversation.pk}/messages/{answer_id}/stream/", params={"t": token},
              cookies={settings.SESSION_COOKIE_NAME: session_key}, timeout=30)
    assert httpx.get(f"{served.url}/healthz", timeout=10).status_code == 200

    # A call's request is observed when its entry point returns, a moment after its usage row is committed
    # (the row is awaited first): wait for both.
    def settled(f):
        observed = [s.value for s in f.get("kiwiclaw_request_duration_seconds", ())
                    if s.name.endswith("_count") and s.labels.get("route") == "proxy:chat-completions"]
        return _value(f, "kiwiclaw_usage_rows_month", tenant="acme", source="api") == calls and sum(observed) >= calls

    families = _wait(lambda: (f := _scrape(served.url)) and settled(f) and f,
                     what="the ledger rows and the proxied requests in /metrics")

    # Request latency per route, summed over both server processes (whichever one answered the scrape).
    assert _value(families, "kiwiclaw_request_duration_seconds_count", route="proxy:chat-completions",
                  method="POST", status="2xx") == calls
    assert sum(s.value for s in families["kiwiclaw_request_duration_seconds"]
               if s.name.endswith("_count") and s.labels["route"] == "conversations:stream") == 1
    assert _value(families, "kiwiclaw_request_duration_seconds_count", route="healthz", method="GET",
                  status="2xx") == 1
    routes = {s.labels["route"] for s in families["kiwiclaw_request_duration_seconds"]}
    assert not any("/" in r and r != "unmatched" for r in routes), routes  # names, never raw paths
    assert _value(families, "kiwiclaw_fallbacks_total", source="api") == calls

    # Scrape-time readers.
    assert _value(families, "kiwiclaw_turns_recent", state="done") == 1
    assert _value(families, "kiwiclaw_turns_in_flight", state="queued") == 0
    assert _value(families, "kiwiclaw_turns_in_flight", state="streaming") == 0
    assert _value(families, "kiwiclaw_turns_recent_fallbacks") == 0
    assert _value(families, "kiwiclaw_usage_rows_month", tenant="acme", source="chat") == 1
    billed = sum(UsageRecord.objects.filter(tenant=acme).values_list("billed", flat=True), Decimal(0))
    assert billed > 0
    assert _value(families, "kiwiclaw_billed_usd_month", tenant="acme") == pytest.approx(float(billed))
    assert _value(families, "kiwiclaw_breaker_failures", endpoint=KIMI) == 0  # the turn's success reset it
    assert _value(families, "kiwiclaw_outbox_depth") == 0  # everything reached the ledger
    for collector in ("turns", "ledger", "breakers", "outbox"):
        assert _value(families, "kiwiclaw_scrape_collector_up", collector=collector) == 1
