import socket

import pytest
from django.test import Client


def _dead_port() -> int:
    # A port that was free a moment ago: nothing listens there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.django_db
def test_healthz_is_200_when_database_and_redis_answer(redis_client):
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


@pytest.mark.django_db
def test_healthz_is_503_naming_redis_when_redis_is_down(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{_dead_port()}/0"
    response = Client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["redis"]
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"].startswith("error")
