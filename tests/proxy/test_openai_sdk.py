"""/v1/chat/completions and /v1/models through the official `openai` package against the live server."""

import json
from decimal import Decimal

import httpx
import pytest

from billing.models import UsageRecord

from .conftest import usage_rows

pytestmark = pytest.mark.django_db(transaction=True)


def test_non_streaming_answer_names_the_upstream_model_and_bills_one_row(openai_client):
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello there"}])
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "kimi-k2.5"
    assert completion.choices[0].message.content.startswith("Echo from kimi-k2.5: hello there")
    assert completion.choices[0].finish_reason == "stop"
    headers = raw.headers
    assert headers["x-kiwiclaw-tier"] == "auto"
    assert headers["x-kiwiclaw-model"] == "kimi-k2.5"
    assert headers["x-kiwiclaw-fallback"] == "0"
    [row] = usage_rows(1)
    assert row.key == f"api:{headers['x-request-id']}"
    assert (row.source, row.endpoint_slug, row.tier) == ("api", "kimi-k2.5", "auto")
    assert row.output_tokens == completion.usage.completion_tokens == 12
    assert Decimal(headers["x-kiwiclaw-cost"]) == row.cost > 0
    assert Decimal(headers["x-kiwiclaw-billed"]) == row.billed > row.cost  # Pro's 30% markup
    assert Decimal(str(completion.usage.model_extra["billed"])) == row.billed


def test_streaming_with_include_usage_ends_with_a_usage_chunk_and_done(openai_client):
    stream = openai_client.chat.completions.create(
        model="max", messages=[{"role": "user", "content": "stream please"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Echo from claude-opus-4-6: stream please")
    assert {c.model for c in chunks} == {"claude-opus-4-6"}
    finishing = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishing == ["stop"]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens == 12
    [row] = usage_rows(1)
    assert (row.endpoint_slug, row.tier, row.output_estimated) == ("claude-opus-4-6", "max", False)
    assert Decimal(str(usage_chunk.usage.model_extra["cost"])) == row.cost
    assert Decimal(str(usage_chunk.usage.model_extra["billed"])) == row.billed


def test_streaming_without_include_usage_sends_no_usage_chunk(openai_client):
    chunks = list(openai_client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(c.choices for c in chunks)
    assert len(usage_rows(1)) == 1


def test_system_prompt_reaches_the_provider_as_its_system_prompt(openai_client, fake_provider):
    fake_provider.scenario("kimi-k2.5", tokens=3)
    completion = openai_client.chat.completions.create(
        model="auto", messages=[{"role": "system", "content": "one two three four five"},
                                {"role": "user", "content": "six"}])
    # The fake counts one input token per word plus one per message: 5 system words + 1 + 1.
    assert completion.usage.prompt_tokens == 7


def test_stop_sequences_are_passed_on_and_a_bad_one_is_refused(openai_client, fake_provider):
    import openai

    completion = openai_client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "count"}], stop=["zulu", "yankee"])
    assert completion.choices[0].finish_reason == "stop"
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "count"}],
                                              stop=["a", "b", "c", "d", "e"])
    assert info.value.body["param"] == "stop"


def test_fallback_is_visible_in_the_headers(openai_client, fake_provider):
    fake_provider.scenario("claude-opus-4-6", status=500)
    raw = openai_client.chat.completions.with_raw_response.create(
        model="max", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-kiwiclaw-model"] == "claude-sonnet-4-6"
    assert raw.headers["x-kiwiclaw-fallback"] == "1"
    assert raw.parse().model == "claude-sonnet-4-6"
    assert [row.endpoint_slug for row in usage_rows(1)] == ["claude-sonnet-4-6"]


def test_streaming_fallback_is_visible_in_the_headers(openai_client, fake_provider):
    fake_provider.scenario("claude-opus-4-6", status=529)
    with openai_client.chat.completions.with_streaming_response.create(
            model="max", messages=[{"role": "user", "content": "hi"}], stream=True) as response:
        assert response.headers["x-kiwiclaw-model"] == "claude-sonnet-4-6"
        assert response.headers["x-kiwiclaw-fallback"] == "1"
        assert {c.model for c in response.parse()} == {"claude-sonnet-4-6"}


def test_models_lists_the_tiers_of_the_plan(openai_client, server, bob_key):
    import openai

    assert [m.id for m in openai_client.models.list()] == ["auto", "max"]
    with openai.OpenAI(api_key=bob_key, base_url=f"{server.url}/v1", max_retries=0) as free:
        assert [m.id for m in free.models.list()] == ["auto"]


def test_streamed_text_goes_out_while_the_answer_is_still_being_generated(server, alice_key, fake_provider):
    # The provider sends three deltas and then hangs: the client must already have the routing headers and the
    # first text while the answer is unfinished (no usage row yet, which is written when the answer ends).
    fake_provider.scenario("kimi-k2.5", hang_after=3)
    body = {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "slowly"}]}
    headers = {"Authorization": f"Bearer {alice_key}"}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers=headers,
                      timeout=30) as response:
        assert response.headers["x-kiwiclaw-model"] == "kimi-k2.5"
        lines = response.iter_lines()
        chunks = (json.loads(line[6:]) for line in lines if line.startswith("data: {"))
        first = next(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"][0]["delta"].get("content"))
        assert first.startswith("Echo")
        assert not UsageRecord.objects.exists()
        for _ in lines:  # the idle timeout (5 s here) ends the answer; the rest of the stream follows
            pass
    assert len(usage_rows(1)) == 1


@pytest.mark.parametrize("model, upstream", [("auto", "kimi-k2.5"), ("max", "claude-opus-4-6")])
def test_the_fake_provider_honours_stop_whichever_provider_answers(openai_client, fake_provider, model, upstream):
    completion = openai_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "count"}],
                                                       stop=[" charlie"])
    assert completion.choices[0].message.content == f"Echo from {upstream}: count alpha bravo"
    assert completion.choices[0].finish_reason == "stop"


def test_user_is_recorded_as_the_end_user_and_seed_is_forwarded(openai_client, fake_provider):
    openai_client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}],
                                          user="tenant-user-1", seed=11)
    [row] = usage_rows(1)
    assert row.end_user == "tenant-user-1"
    assert fake_provider.requests()[0]["params"]["seed"] == 11


@pytest.mark.parametrize("kwargs, param", [
    ({"user": "x" * 257}, "user"),
    ({"user": "two words"}, "user"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"metadata": {"team": "a"}}, "metadata"),
    ({"seed": 1, "store": True}, "store"),
])
def test_bad_input_is_a_400_naming_it_and_writes_no_row(openai_client, fake_provider, kwargs, param):
    import openai

    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}], **kwargs)
    assert info.value.body["param"] == param
    assert fake_provider.requests() == []
    assert usage_rows(0, settle=0.2) == []
