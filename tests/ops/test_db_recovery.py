"""Recovery without restarts: after Postgres drops every connection, the worker and the web processes serve
again at once, no process restarted (issue #13, findings 1 and 4).

The drop is `pg_terminate_backend` on every backend of the test database but the test's own (what a Postgres
restart or a failover does to the pooled connections of every process). Real processes throughout: a Celery
worker subprocess, a uvicorn web process, the fake provider.
"""

import httpx
import pytest
from django.db import connection

from conversations import services
from tests.chat.conftest import (  # noqa: F401 - fixtures
    alice_chat,
    chat_redis,
    chat_settings,
    wait_finished,
    worker_process,
)
from tests.factories import make_api_key
from tests.proxy.conftest import ProxyServer, reseed_defaults

integration = pytest.mark.django_db(transaction=True)


def drop_connections() -> int:
    """End every other backend of the test database (only ours: other databases on the server are not
    touched); returns how many were ended."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@integration
def test_worker_runs_the_next_turn_after_postgres_dropped_its_connections(worker_process, alice_chat, alice):  # noqa: F811
    worker_process()
    first = services.message_send(conversation=alice_chat, author=alice, text="hello")
    assert wait_finished(first.pk).status == "done"

    assert drop_connections() > 0  # the worker's pooled connections and the turn loop's among them

    second = services.message_send(conversation=alice_chat, author=alice, text="and again")
    finished = wait_finished(second.pk)
    assert finished.status == "done", finished.error
    assert finished.content


@pytest.fixture
def web_server(transactional_db, redis_client, fake_provider):
    """A uvicorn web process on the test database, reading the database on every request: no API key cache,
    no catalog snapshot. DEBUG on, so pages name their static files without a collected manifest."""
    reseed_defaults()
    server = ProxyServer(extra_env={"PROXY_KEY_CACHE_TTL": "0", "ROUTING_CATALOG_TTL_SECONDS": "0",
                                    "DJANGO_DEBUG": "1"})
    yield server
    server.stop()
    connection.close_pool() if hasattr(connection, "close_pool") else None


def _session_cookie(settings, user, tenant) -> dict[str, str]:
    """A logged-in session, signed as the server signs them (its secret key is ProxyServer's "test")."""
    from django.contrib.sessions.backends.cached_db import SessionStore

    settings.SECRET_KEY = "test"
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session["tenant_id"] = tenant.pk
    session.create()
    return {"sessionid": session.session_key}


@integration
def test_first_requests_after_postgres_dropped_its_connections_answer_200(web_server, settings, alice, acme):
    secret = make_api_key(tenant=acme, user=alice)[1]
    bearer = {"Authorization": f"Bearer {secret}"}
    services.conversation_create(tenant=acme, owner=alice, title="before the drop")
    cookies = _session_cookie(settings, alice, acme)

    def requests(client: httpx.Client) -> dict[str, int]:
        return {
            "page": client.get("/chat/", cookies=cookies).status_code,
            "v1": client.get("/v1/models", headers=bearer).status_code,
            "api": client.get("/api/conversations/", headers=bearer).status_code,
        }

    with httpx.Client(base_url=web_server.url, timeout=30) as client:
        # Every path has used (and pooled) connections before the drop.
        assert requests(client) == {"page": 200, "v1": 200, "api": 200}
        assert requests(client) == {"page": 200, "v1": 200, "api": 200}

        assert drop_connections() > 0

        assert requests(client) == {"page": 200, "v1": 200, "api": 200}
