"""Every call writes its usage row exactly once (key api:<request id>), also when the client goes away."""

import json
import socket
import time
from decimal import Decimal

import orjson
import pytest

from billing.models import UsageRecord

from .conftest import usage_rows

pytestmark = pytest.mark.django_db(transaction=True)


def _send_and_hang_up(server, key, body: dict, *, after: float) -> None:
    """A client that sends a request, reads for `after` seconds, then closes the connection."""
    payload = orjson.dumps(body)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
    sock.settimeout(0.05)
    deadline = time.monotonic() + after
    while time.monotonic() < deadline:
        try:
            sock.recv(65536)
        except TimeoutError:
            pass
    sock.close()


def test_client_that_disconnects_mid_stream_still_produces_exactly_one_row_with_tokens_so_far(
        server, fake_provider, alice_key):
    fake_provider.scenario("kimi-k2.5", tokens=60, delay_ms=50)  # about 3 s to answer fully
    _send_and_hang_up(server, alice_key, {"model": "auto", "stream": True,
                                          "messages": [{"role": "user", "content": "a long answer"}]}, after=0.8)
    rows = usage_rows(1)
    assert len(rows) == 1
    row = rows[0]
    assert row.key.startswith("api:") and row.endpoint_slug == "kimi-k2.5"
    assert 0 < row.output_tokens < 60
    assert row.output_estimated is True  # the provider reports usage at the end, which never came
    assert row.cost > 0


def test_client_that_disconnects_from_a_non_streaming_call_still_produces_exactly_one_row(
        server, fake_provider, alice_key):
    # Non-streaming calls are one JSON answer upstream: it arrives whole after the client left, and is billed.
    fake_provider.scenario("kimi-k2.5", tokens=20, ttft_ms=1500)
    _send_and_hang_up(server, alice_key, {"model": "auto", "messages": [{"role": "user", "content": "x"}]},
                      after=0.5)
    rows = usage_rows(1)
    assert len(rows) == 1 and rows[0].output_tokens > 0


def _read_answer_and_hang_up(server, key, body: dict) -> bytes:
    """A client that reads its whole answer and closes the connection the moment it has it, while the proxy
    is still writing the usage row."""
    payload = orjson.dumps(body)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {key}\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
        data = b""
        while True:
            chunk = sock.recv(65536)
            data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                           if line.startswith(b"content-length:")), None)
            if not chunk or (length is not None and len(rest) >= length) or b"data: [DONE]" in rest:
                return data


@pytest.mark.parametrize("stream", [False, True], ids=["non-streaming", "streaming"])
def test_client_that_hangs_up_right_after_its_answer_still_produces_exactly_one_row(server, alice_key, stream):
    answer = _read_answer_and_hang_up(server, alice_key, {
        "model": "auto", "stream": stream, "stream_options": {"include_usage": True} if stream else None,
        "messages": [{"role": "user", "content": "hello"}]})
    assert answer.startswith(b"HTTP/1.1 200")
    headers = dict(line.split(b": ", 1) for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:])
    [row] = usage_rows(1)
    assert row.key == f"api:{headers[b'x-request-id'].decode()}"
    assert row.output_tokens == 12 and row.output_estimated is False
    # The answer carried the billed amount before the row existed: the same figure.
    if stream:
        usage_chunk = answer.split(b"data: ")[-2].split(b"\n")[0]  # the last event before [DONE]
        assert json.loads(usage_chunk, parse_float=Decimal)["usage"]["billed"] == row.billed
    else:
        assert Decimal(headers[b"x-kiwiclaw-billed"].decode()) == row.billed


def test_usage_key_is_the_request_id_and_one_row_per_call(openai_client):
    ids = set()
    for _ in range(3):
        raw = openai_client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}])
        ids.add(raw.headers["x-request-id"])
    rows = usage_rows(3)
    assert {row.key for row in rows} == {f"api:{i}" for i in ids}
    assert all(row.api_key_id is not None and row.source == "api" for row in rows)


def test_a_failed_call_writes_no_row_and_releases_its_budget_hold(server, fake_provider, alice_key,
                                                                  redis_client):
    import openai

    for model in ("kimi-k2.5", "claude-haiku-4-5"):
        fake_provider.scenario(model, status=400, error_type="invalid_request_error")
    client = openai.OpenAI(api_key=alice_key, base_url=f"{server.url}/v1", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert UsageRecord.objects.count() == 0
    holds = [k for k in redis_client.scan_iter("kc:budget:res:*") if redis_client.hlen(k)]
    assert holds == []
