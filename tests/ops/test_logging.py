"""Structured logs: one JSON object per line, carrying the id of the request (or Celery task) it was written for.

Real processes: a uvicorn server with DEBUG off (JSON is the default there) and a Celery worker, their output read
line by line (tests/harness.py).
"""

import json
import re
import sys
import uuid

import httpx
import pytest
from django.conf import settings

from tests.harness import http_ready, listening_port, start_process

HEX_ID = re.compile(r"[0-9a-f]{32}")


def _env() -> dict:
    import os

    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    env = {**os.environ,
           "DATABASE_URL": f"postgres://{db.get('USER') or 'postgres'}{password}@{db.get('HOST') or '127.0.0.1'}:"
                           f"{db.get('PORT') or 5432}/{db['NAME']}",
           "REDIS_URL": settings.REDIS_URL, "CELERY_BROKER_URL": settings.REDIS_URL, "DJANGO_SECRET_KEY": "test",
           "DJANGO_DEBUG": "0", "DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
           "LOG_LEVEL": "INFO"}
    for name in ("DJANGO_TEST_DATABASE", "LOG_FORMAT", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    return env


def _json_lines(proc, since: int) -> list[dict]:
    lines = []
    for line in proc.log_since(since):
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _wait_json_line(proc, since: int, predicate, timeout=20.0) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in _json_lines(proc, since):
            if predicate(record):
                return record
        time.sleep(0.05)
    raise AssertionError(f"no such log line; got:\n{proc.log_since(since)[-20:]}")


@pytest.fixture(scope="module")
def web(django_db_setup, django_db_blocker):
    proc = start_process(
        [sys.executable, "-m", "uvicorn", "kiwiclaw.asgi:application", "--host", "127.0.0.1", "--port", "0",
         "--loop", "uvloop", "--http", "httptools", "--lifespan", "off", "--no-access-log"],
        name="web", env=_env(), port_from=listening_port, ready=http_ready("/v1/models", 401), start_timeout=60,
    )
    yield proc
    proc.stop()


def test_a_log_line_written_during_a_request_is_json_with_the_request_id_the_header_returns(web):
    mark = web.log_mark
    sent = f"lb-{uuid.uuid4()}"
    response = httpx.get(f"{web.url}/api/nothing-here", headers={"X-Request-ID": sent}, timeout=10)
    assert response.status_code == 404
    assert response.headers["x-request-id"] == sent  # a load balancer's well-formed id is kept
    record = _wait_json_line(web, mark, lambda r: r.get("message") == "Not Found: /api/nothing-here")
    assert record["request_id"] == sent
    assert (record["level"], record["logger"]) == ("WARNING", "django.request")
    assert "time" in record


def test_a_request_without_a_usable_id_gets_a_new_one(web):
    for headers in ({}, {"X-Request-ID": "short"}, {"X-Request-ID": "has spaces in it, and more"}):
        mark = web.log_mark
        response = httpx.get(f"{web.url}/api/nothing-here", headers=headers, timeout=10)
        made = response.headers["x-request-id"]
        assert HEX_ID.fullmatch(made), made
        record = _wait_json_line(web, mark, lambda r: r.get("message") == "Not Found: /api/nothing-here")
        assert record["request_id"] == made
        assert "client_request_id" not in record


def test_v1_never_takes_its_request_id_from_the_client(web):
    """On /v1 the request id keys the usage row: a client must not choose it."""
    sent = f"client-{uuid.uuid4()}"
    response = httpx.get(f"{web.url}/v1/models", headers={"X-Request-ID": sent}, timeout=10)
    assert response.status_code == 401
    ids = response.headers.get_list("x-request-id")
    assert len(ids) == 1 and ids[0] != sent and HEX_ID.fullmatch(ids[0])


def test_a_task_a_request_started_stops_carrying_its_id_when_the_request_ends():
    """A long-lived task started during a request (the SSE hub's reader) inherits the request's context; once the
    request has ended its log lines must not name that request."""
    import asyncio
    import logging

    from infra import requestid

    def logged_id() -> str:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        requestid.RequestIdFilter().filter(record)
        return record.request_id

    async def main():
        release, seen = asyncio.Event(), []

        async def long_lived():
            seen.append(logged_id())
            await release.wait()
            seen.append(logged_id())

        token = requestid.begin("req-0123456789")
        task = asyncio.get_running_loop().create_task(long_lived())
        await asyncio.sleep(0)
        requestid.end(token)
        release.set()
        await task
        return seen, logged_id()

    assert asyncio.run(main()) == (["req-0123456789", "-"], "-")


def test_is_well_formed():
    from infra import requestid

    assert requestid.is_well_formed("0f2c1d9e-7c1b-4a7e-9f5e-0e8c6a1b2c3d")
    assert requestid.is_well_formed("Root=1-67891233-abcdef012345678912345678")
    for bad in ("", "short", "x" * 129, "a b c d e f g h", "abc\r\nSet-Cookie: x=1", "ünïcode-id-123"):
        assert not requestid.is_well_formed(bad), bad


@pytest.mark.django_db(transaction=True)
def test_a_celery_task_logs_with_its_task_id(redis_client):
    from kiwiclaw.celery import app

    worker = start_process(
        [sys.executable, "-m", "celery", "-A", "kiwiclaw", "worker", "--pool", "threads", "--concurrency", "2",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        name="celery worker", env=_env(), ready=r"celery@\S+ ready\.", start_timeout=60,
    )
    try:
        mark = worker.log_mark
        task_id = str(uuid.uuid4())
        app.send_task("conversations.tasks.sweep_stale_turns", task_id=task_id)
        record = _wait_json_line(worker, mark, lambda r: r.get("logger") == "celery.app.trace"
                                 and task_id in r.get("message", ""))
        assert record["task_id"] == task_id and record["request_id"] == task_id
    finally:
        worker.stop()
        from django.db import connections

        close = getattr(connections["default"], "close_pool", None)
        if close is not None:
            close()
