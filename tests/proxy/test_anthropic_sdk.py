"""/v1/messages through the official `anthropic` package against the live server."""

from decimal import Decimal

import pytest

from .conftest import usage_rows

pytestmark = pytest.mark.django_db(transaction=True)


def test_non_streaming_message_with_system_prompt(anthropic_client):
    raw = anthropic_client.messages.with_raw_response.create(
        model="max", max_tokens=100, system="one two three", messages=[{"role": "user", "content": "hello"}])
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "claude-opus-4-6"
    assert message.content[0].text.startswith("Echo from claude-opus-4-6: hello")
    assert message.stop_reason == "end_turn"
    # The fake counts one input token per word plus one per message: 3 system words + 1 + 1.
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 12)
    assert raw.headers["x-kiwiclaw-model"] == "claude-opus-4-6"
    [row] = usage_rows(1)
    assert row.key == f"api:{raw.headers['x-request-id']}"
    assert Decimal(raw.headers["x-kiwiclaw-billed"]) == row.billed


def test_streaming_follows_anthropics_event_sequence(anthropic_client):
    with anthropic_client.messages.stream(model="auto", max_tokens=100,
                                          messages=[{"role": "user", "content": "stream it"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds
    assert final.model == "kimi-k2.5"
    assert final.content[0].text.startswith("Echo from kimi-k2.5: stream it")
    assert final.usage.output_tokens == 12
    [row] = usage_rows(1)
    assert (row.endpoint_slug, row.output_tokens) == ("kimi-k2.5", 12)


def test_max_tokens_ends_with_max_tokens_stop_reason(anthropic_client):
    message = anthropic_client.messages.create(model="auto", max_tokens=3, stop_sequences=["zulu"],
                                               messages=[{"role": "user", "content": "long answer"}])
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_bearer_header_works_as_well_as_x_api_key(server, alice_key):
    import httpx

    response = httpx.post(f"{server.url}/v1/messages", headers={"authorization": f"Bearer {alice_key}",
                                                                 "anthropic-version": "2023-06-01"},
                          json={"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 200 and response.json()["type"] == "message"
