"""Fixtures shared by the whole suite.

Tests run against real Postgres and Redis (DATABASE_URL / REDIS_URL, or the embedded servers `make test`
starts). The Redis database named by REDIS_URL is flushed around each test that uses `redis_client`.
Area fixtures live in each test package's own conftest.py.
"""

import os
import uuid

import pytest
import redis as redis_lib
from django.conf import settings

from tests import harness
from tests.browser import browser_pages  # noqa: F401 (the shared browser fixture, tests/browser.py)
from tests.factories import MembershipFactory, TenantFactory, UserFactory

# The servers tests start as processes run with DEBUG off, where the hashed (manifest) storage needs a
# collectstatic first: they name static files plainly instead. The production-serving test starts from an
# environment without DJANGO_* variables and collects, as the image does (tests/ops/test_production_serving.py).
os.environ["DJANGO_STATICFILES_STORAGE"] = "django.contrib.staticfiles.storage.StaticFilesStorage"

_LOG_MARKS = pytest.StashKey[dict]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    item.stash[_LOG_MARKS] = harness.log_marks()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report shows what the processes it used (tests/harness.py) logged while it ran."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.extend(harness.log_sections(item.stash.get(_LOG_MARKS, {})))


@pytest.fixture(autouse=True)
def _test_settings(settings):
    # Production settings redirect HTTP to HTTPS; the test client speaks plain HTTP.
    settings.SECURE_SSL_REDIRECT = False
    # The real hasher costs about a second per password on this machine; its cost is not what is tested.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Login and password-reset throttles (tenants/throttle.py) count per account and address in Redis: each test
    # counts afresh, so a run's (or an earlier run's) attempts from 127.0.0.1 never throttle another test.
    settings.RATELIMIT_CACHE_PREFIX = f"rl:{uuid.uuid4().hex}:"
    # Pages name static files without collectstatic's manifest (tests/ops/test_production_serving.py checks the
    # hashed names the production server gives).
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}


@pytest.fixture(scope="session", autouse=True)
def _end_stray_connections(django_db_setup, django_db_blocker):
    """Live servers, worker threads and pooled connections can still hold the test database when the session
    ends; end them so it can be dropped cleanly."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def reseed_default_rows():
    """Put back what the data migrations create (default plans, the model catalog): a transactional test's
    flush removes them. Idempotent."""
    import importlib

    from django.apps import apps as django_apps

    from routing.catalog import catalog_invalidate
    from tenants.models import Plan
    from tenants.plans import ensure_default_plans

    ensure_default_plans(Plan)
    importlib.import_module("routing.migrations.0002_seed_catalog").seed(django_apps, None)
    importlib.import_module("routing.migrations.0004_endpoint_vision").seed_vision(django_apps, None)
    catalog_invalidate()


def _is_transactional(request) -> bool:
    marker = request.node.get_closest_marker("django_db")
    return bool(marker and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )


@pytest.fixture(autouse=True)
def _default_rows(request):
    """Transactional tests start with the seeded plans and catalog, like every other test.

    (Serialized rollback is not used for this: after a plain transactional test's flush re-creates content
    types, restoring the serialized copy collides with them.)"""
    if _is_transactional(request):
        request.getfixturevalue("transactional_db")
        reseed_default_rows()


@pytest.fixture
def server_url(settings):
    """A threaded WSGI live server on a free loopback port, for page tests (the chat's SSE needs an ASGI
    server of its own). Started after the settings below are in place: the security middleware reads them
    once, when the server's handler is built."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    thread = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait(10)
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()


@pytest.fixture
def redis_client():
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def acme(db):
    return TenantFactory(slug="acme", name="Acme Corp", plan=_plan("pro"))


@pytest.fixture
def globex(db):
    return TenantFactory(slug="globex", name="Globex", plan=_plan("free"))


@pytest.fixture
def alice(acme):
    user = UserFactory(email="alice@acme.test", name="Alice Admin")
    MembershipFactory(user=user, tenant=acme, role="admin")
    return user


@pytest.fixture
def carol(acme):
    user = UserFactory(email="carol@acme.test", name="Carol Member")
    MembershipFactory(user=user, tenant=acme, role="member")
    return user


@pytest.fixture
def bob(globex):
    user = UserFactory(email="bob@globex.test", name="Bob Member")
    MembershipFactory(user=user, tenant=globex, role="member")
    return user


def _plan(slug):
    from tenants.models import Plan

    return Plan.objects.get(slug=slug)


# --- The fake LLM provider (routing) ---------------------------------------------------------------------
# One real server process per test session, started by tests/harness.py on port 0; each test gets it reset
# (no scenarios, empty request log, circuit breakers closed) and the provider settings pointed at it. The URLs
# and keys are also exported to os.environ so processes the tests start (a Celery worker, a second process)
# inherit them.


class FakeProviderHandle:
    def __init__(self, url: str):
        import httpx

        self.url = url
        self._http = httpx.Client(base_url=url, timeout=5)

    def scenario(self, model: str, options: dict | None = None, **opts) -> None:
        """Set the behaviour for one upstream model id (see devtools/fake_provider/app.py for the options)."""
        self._http.post("/_control/scenario", json={"model": model, **(options or {}), **opts}).raise_for_status()

    def reset(self) -> None:
        self._http.post("/_control/reset").raise_for_status()

    def requests(self) -> list[dict]:
        """The requests received since the last reset: [{"model", "protocol", "stream", "status", ...}]."""
        return self._http.get("/_control/requests").json()["requests"]

    def models_called(self) -> list[str]:
        return [r["model"] for r in self.requests()]


@pytest.fixture(scope="session")
def fake_provider_server():
    import os
    import re
    import sys

    from devtools.fake_provider.server import READY_PREFIX

    # The fake binds port 0 itself and prints the URL it got (devtools/fake_provider/server.py).
    proc = harness.start_process(
        [sys.executable, "-m", "devtools.fake_provider", "--port", "0"], name="fake provider",
        port_from=rf"^{re.escape(READY_PREFIX)}http://127\.0\.0\.1:(\d+)$",
    )
    url = proc.url
    env = {
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": "fake-anthropic-key",
        "MOONSHOT_BASE_URL": f"{url}/v1",
        "MOONSHOT_API_KEY": "fake-moonshot-key",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    handle = FakeProviderHandle(url)
    yield handle
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.stop()


@pytest.fixture
def fake_provider(fake_provider_server, settings):
    import os

    for name in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "MOONSHOT_BASE_URL", "MOONSHOT_API_KEY"):
        setattr(settings, name, os.environ[name])
    fake_provider_server.reset()
    _close_all_breakers()
    yield fake_provider_server
    fake_provider_server.reset()


def _close_all_breakers():
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter("kc:breaker:*"))
    if keys:
        client.delete(*keys)
    client.close()
