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


def test_a_stop_sequence_stop_names_the_sequence_when_claude_answers(anthropic_client, fake_provider):
    message = anthropic_client.messages.create(model="max", max_tokens=100, stop_sequences=["zulu", " charlie"],
                                               messages=[{"role": "user", "content": "count"}])
    assert message.content[0].text == "Echo from claude-opus-4-6: count alpha bravo"
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", " charlie")
    with anthropic_client.messages.stream(model="max", max_tokens=100, stop_sequences=[" charlie"],
                                          messages=[{"role": "user", "content": "count"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Echo from claude-opus-4-6: count alpha bravo"
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", " charlie")
    assert [r["params"]["stop_sequences"] for r in fake_provider.requests()] == [["zulu", " charlie"], [" charlie"]]
    rows = usage_rows(2)
    assert [row.output_tokens for row in rows] == [message.usage.output_tokens, final.usage.output_tokens] == [6, 6]


def test_a_stop_sequence_stop_at_an_openai_compatible_provider_is_an_end_turn(anthropic_client, fake_provider):
    # The OpenAI API's finish_reason "stop" does not say whether (or which) stop sequence matched.
    message = anthropic_client.messages.create(model="auto", max_tokens=100, stop_sequences=[" charlie"],
                                               messages=[{"role": "user", "content": "count"}])
    assert message.content[0].text == "Echo from kimi-k2.5: count alpha bravo"
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert fake_provider.requests()[0]["params"]["stop"] == [" charlie"]


def test_metadata_user_id_is_recorded_as_the_end_user(anthropic_client):
    anthropic_client.messages.create(model="auto", max_tokens=20, metadata={"user_id": "hashed-user-42"},
                                     messages=[{"role": "user", "content": "hi"}])
    [row] = usage_rows(1)
    assert row.end_user == "hashed-user-42"


@pytest.mark.parametrize("kwargs, named", [
    ({"metadata": {"user_id": "u" * 257}}, "metadata.user_id"),
    ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
])
def test_bad_input_is_a_400_naming_it_and_writes_no_row(anthropic_client, fake_provider, kwargs, named):
    import anthropic

    with pytest.raises(anthropic.BadRequestError) as info:
        anthropic_client.messages.create(model="auto", max_tokens=20, messages=[{"role": "user", "content": "hi"}],
                                         **kwargs)
    assert f"`{named}`" in info.value.message
    assert fake_provider.requests() == []
    assert usage_rows(0, settle=0.2) == []


def test_an_unknown_anthropic_version_is_refused_by_name(server, alice_key, fake_provider):
    import anthropic

    client = anthropic.Anthropic(api_key=alice_key, base_url=server.url, max_retries=0,
                                 default_headers={"anthropic-version": "2023-01-01"})
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="auto", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    client.close()
    assert "`anthropic-version`" in info.value.message
    assert fake_provider.requests() == [] and usage_rows(0, settle=0.2) == []
