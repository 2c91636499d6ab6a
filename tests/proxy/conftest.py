"""Fixtures for the proxy and REST API tests.

`proxy_server` is a real uvicorn process serving kiwiclaw.asgi on a loopback port (port 0, tests/harness.py),
against the test database (test_<db>) and the test Redis, with provider URLs pointing at the fake provider.
Tests that talk to it must commit their data, so they use `live_db` (a transactional database, re-seeded with
the default plans and model catalog that the flush between transactional tests removes).
"""

import importlib
import os
import sys
import time

import pytest
from django.apps import apps as django_apps
from django.conf import settings

from tests.factories import make_api_key
from tests.harness import http_ready, listening_port, start_process

SERVER_ENV = {
    # Short deadlines so failure tests end quickly.
    "ROUTING_DEADLINE_SECONDS": "5",
    "ROUTING_RETRY_ATTEMPTS": "1",
    "ROUTING_BACKOFF_BASE_SECONDS": "0.01",
    "ROUTING_BACKOFF_MAX_SECONDS": "0.05",
    "ROUTING_READ_TIMEOUT": "5",
    "ROUTING_STREAM_IDLE_TIMEOUT": "5",
    "DJANGO_SECURE_SSL_REDIRECT": "0",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    "LOG_LEVEL": "WARNING",
}


def _database_url() -> str:
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class ProxyServer:
    """uvicorn serving kiwiclaw.asgi, started by tests/harness.py on port 0 (the port read from the kernel's
    listening socket) and ready once /v1/models answers 401 to a request without a key."""

    def __init__(self, *, extra_env: dict | None = None):
        env = {**os.environ, **SERVER_ENV, "DATABASE_URL": _database_url(), "REDIS_URL": settings.REDIS_URL,
               "DJANGO_SECRET_KEY": "test", "DJANGO_DEBUG": "0", **(extra_env or {})}
        env.pop("DJANGO_TEST_DATABASE", None)
        self.process = start_process(
            [sys.executable, "-m", "uvicorn", "kiwiclaw.asgi:application", "--host", "127.0.0.1", "--port", "0",
             "--loop", "uvloop", "--http", "httptools", "--lifespan", "off", "--no-access-log",
             # A call left hanging on a hung provider must not hold the stop for the harness's whole deadline.
             "--timeout-graceful-shutdown", "2"],
            name="proxy server", env=env, port_from=listening_port, ready=http_ready("/v1/models", 401),
        )
        self.port = self.process.port
        self.url = self.process.url

    def stop(self):
        self.process.stop()


def reseed_defaults():
    """Default plans and the model catalog, as the data migrations create them (a transactional test's flush
    removes them)."""
    from proxy.auth import key_cache_clear
    from routing.catalog import catalog_invalidate
    from tenants.models import Plan
    from tenants.plans import ensure_default_plans

    ensure_default_plans(Plan)
    importlib.import_module("routing.migrations.0002_seed_catalog").seed(django_apps, None)
    importlib.import_module("routing.migrations.0004_endpoint_vision").seed_vision(django_apps, None)
    catalog_invalidate()
    key_cache_clear()


def usage_rows(count: int = 1, *, timeout: float = 8.0, settle: float = 0.3) -> list:
    """The usage rows once `count` of them are in the ledger. The proxy writes a call's row just after its
    answer (proxy/handler.py), so a client can have the answer a few milliseconds before the row
    lands. Waits `settle` seconds more, so a second row for the same call would show up (and fail the test)."""
    from billing.models import UsageRecord

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and UsageRecord.objects.count() < count:
        time.sleep(0.02)
    time.sleep(settle)
    return list(UsageRecord.objects.order_by("id"))


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Factories hash a password per user; the default hasher costs seconds on two shared cores.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def live_db(transactional_db, redis_client):
    reseed_defaults()
    yield
    from routing.catalog import catalog_invalidate

    catalog_invalidate()


@pytest.fixture(scope="session")
def proxy_server(django_db_setup, django_db_blocker, fake_provider_server):
    server = ProxyServer()
    yield server
    server.stop()
    # Connections this process's threads left in the pool would keep the test database from being dropped.
    from django.db import connections

    close = getattr(connections["default"], "close_pool", None)
    if close is not None:
        close()


@pytest.fixture
def server(proxy_server, fake_provider, live_db):
    """The live proxy with a fresh fake provider and a freshly seeded, committed database."""
    return proxy_server


@pytest.fixture
def alice_key(live_db, alice, acme):
    return make_api_key(tenant=acme, user=alice, name="alice key")[1]


@pytest.fixture
def carol_key(live_db, carol, acme):
    return make_api_key(tenant=acme, user=carol, name="carol key")[1]


@pytest.fixture
def bob_key(live_db, bob, globex):
    return make_api_key(tenant=globex, user=bob, name="bob key")[1]


@pytest.fixture
def openai_client(server, alice_key):
    import openai

    client = openai.OpenAI(api_key=alice_key, base_url=f"{server.url}/v1", max_retries=0, timeout=20)
    yield client
    client.close()


@pytest.fixture
def anthropic_client(server, alice_key):
    import anthropic

    client = anthropic.Anthropic(api_key=alice_key, base_url=server.url, max_retries=0, timeout=20)
    yield client
    client.close()
