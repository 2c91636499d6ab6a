"""/v1 against a provider that hangs: the first endpoint accepts the request and sends nothing, and the call
falls back to the next endpoint at the per-endpoint deadline, not at the socket read timeout; a stream that
stalls after its first deltas ends after the idle timeout with the text so far and one usage row.

The server here has a long read timeout and a long overall deadline, so only the per-endpoint deadlines (2 s,
not sub-second) can end the waits quickly; the margin above them is generous.
"""

import time

import httpx
import orjson
import pytest

from .conftest import ProxyServer, usage_rows

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

OPUS, SONNET = "claude-opus-4-6", "claude-sonnet-4-6"
DEADLINE = 2.0
MARGIN = 3.0
HANG_ENV = {
    "ROUTING_READ_TIMEOUT": "60",
    "ROUTING_DEADLINE_SECONDS": "60",
    "ROUTING_FIRST_BYTE_TIMEOUT": str(DEADLINE),
    "ROUTING_FIRST_DELTA_TIMEOUT": str(DEADLINE),
    "ROUTING_STREAM_IDLE_TIMEOUT": str(DEADLINE),
}


@pytest.fixture(scope="module")
def hang_server(django_db_setup, django_db_blocker, fake_provider_server):
    server = ProxyServer(extra_env=HANG_ENV)
    yield server
    server.stop()


@pytest.fixture
def client(hang_server, fake_provider, alice_key):
    with httpx.Client(base_url=hang_server.url, headers={"Authorization": f"Bearer {alice_key}"},
                      timeout=30) as http:
        # A keyed call that reaches no provider: the server's first request loads the key, the catalog and the
        # database connection (seconds on a busy machine), which belongs outside the timed fallback below.
        http.get("/v1/models").raise_for_status()
        yield http


def _body(stream: bool) -> dict:
    return {"model": "max", "stream": stream, "messages": [{"role": "user", "content": "What is a kiwi?"}]}


def _sse_data(raw: bytes) -> list[dict | str]:
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


def _row_of(response: httpx.Response):
    rows = usage_rows(1)
    assert len(rows) == 1
    assert rows[0].key == f"api:{response.headers['x-request-id']}"
    return rows[0]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_hanging_first_endpoint_falls_back_within_the_deadline(client, fake_provider, stream):
    fake_provider.scenario(OPUS, hang=True)
    fake_provider.scenario(SONNET, text="From the next endpoint.")
    start = time.monotonic()
    response = client.post("/v1/chat/completions", json=_body(stream))
    elapsed = time.monotonic() - start

    assert response.status_code == 200, response.text
    assert (response.headers["x-kiwiclaw-model"], response.headers["x-kiwiclaw-fallback"]) == (SONNET, "1")
    if stream:
        chunks = _sse_data(response.content)
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c["choices"]) == \
            "From the next endpoint."
        assert chunks[-1] == "[DONE]"
    else:
        assert response.json()["choices"][0]["message"]["content"] == "From the next endpoint."
    assert DEADLINE <= elapsed < DEADLINE + MARGIN
    assert fake_provider.models_called() == [OPUS, SONNET]
    assert _row_of(response).endpoint_slug == SONNET


def test_stream_that_stalls_ends_after_the_idle_timeout_with_the_text_so_far_and_one_row(client, fake_provider):
    fake_provider.scenario(OPUS, text="one two three four five six", hang_after=3)
    start = time.monotonic()
    response = client.post("/v1/chat/completions", json=_body(True))
    elapsed = time.monotonic() - start

    assert response.status_code == 200
    chunks = _sse_data(response.content)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if isinstance(c, dict)
                   and c.get("choices"))
    assert text == "one two three"
    error = chunks[-1]["error"]
    assert "nothing for 2 s" in error["message"]
    assert DEADLINE <= elapsed < DEADLINE + MARGIN
    row = _row_of(response)
    assert row.endpoint_slug == OPUS and row.output_tokens > 0 and row.cost > 0
