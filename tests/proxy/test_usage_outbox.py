"""Finding 2: a /v1 answer that ends while Postgres is unavailable is still billed, exactly once, once it returns.

The proxy server is a real uvicorn process; the outage is real (tests/db_faults.py: the test database refuses
connections and its backends are terminated), met by the server through its own pool.
"""

import json
import time
from decimal import Decimal

import httpx
import pytest

from billing import outbox
from billing.models import UsageRecord
from routing import metering  # noqa: F401 - registers the outbox's `usage` handler, as the proxy does
from tests.db_faults import database_unavailable

pytestmark = pytest.mark.django_db(transaction=True)


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_usage_of_an_answer_ending_while_postgres_is_down_is_written_once_it_returns(
        server, fake_provider, alice_key, redis_client):
    from django.db import connection

    fake_provider.scenario("kimi-k2.5", tokens=30, delay_ms=60)  # about 2 s of streaming
    body = {"model": "auto", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "an answer that outlives the database"}]}
    with httpx.Client(base_url=server.url, timeout=30) as client, client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {alice_key}"}) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert "delta" in first
        with database_unavailable(keep=connection):
            rest = list(lines)  # the answer streams to its end with the database gone
            assert "data: [DONE]" in rest
            usage = next(json.loads(line[6:], parse_float=Decimal)["usage"] for line in rest
                         if line.startswith("data: {") and json.loads(line[6:]).get("usage"))
            assert usage["completion_tokens"] == 30
            key = f"api:{request_id}"
            # The server could not write the row; it keeps the whole record durably instead.
            entry = _wait(lambda: redis_client.hget(outbox.HASH_KEY, key), 30, "the usage record in the outbox")
            assert UsageRecord.objects.count() == 0

    # The database is back: the server's outbox writes the row, with the real tokens, once.
    rows = _wait(lambda: list(UsageRecord.objects.filter(key=key)), 20, "the usage row after the database returned")
    assert len(rows) == 1
    row = rows[0]
    assert row.output_tokens == 30 and row.output_estimated is False and row.cost > 0
    assert row.billed == usage["billed"]
    _wait(lambda: outbox.depth() == 0, 10, "the outbox to empty")

    # A second drain of the same entry (a redelivery, a second drainer) adds nothing.
    redis_client.hset(outbox.HASH_KEY, key, entry)
    counts = outbox.drain()
    assert counts["applied"] == 1
    assert UsageRecord.objects.count() == 1
    assert outbox.depth() == 0
