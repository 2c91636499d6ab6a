"""Answers over real loopback HTTP: each provider, streaming and non-streaming, normalized the same way."""

import pytest

from devtools.fake_provider.app import prompt_tokens
from routing.types import Done, Routed, TextDelta, Usage

from .conftest import ask, collect, complete

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "tier,endpoint,provider",
    [("max", "claude-opus-4-6", "anthropic"), ("auto", "kimi-k2.5", "moonshot")],
)
def test_streaming_and_non_streaming_give_the_same_normalized_result(routing_env, pro_tenant, tier, endpoint,
                                                                     provider):
    request_text = "Tell me about kiwis please"
    streamed = complete(tenant=pro_tenant, tier=tier, request=ask(request_text, stream=True))
    plain = complete(tenant=pro_tenant, tier=tier, request=ask(request_text, stream=False))

    expected_input = prompt_tokens(system=None, messages=[{"role": "user", "content": request_text}])
    for result in (streamed, plain):
        assert result.endpoint == endpoint
        assert result.provider == provider
        assert result.finish_reason == "stop"
        assert result.text.startswith(f"Echo from {endpoint}: Tell me about kiwis please")
        assert result.usage == Usage(input_tokens=expected_input, output_tokens=12)
        assert result.fallback_count == 0
        assert [a.outcome for a in result.attempts] == ["ok"]
    assert streamed.text == plain.text
    assert [(r["model"], r["stream"]) for r in routing_env.requests()] == [(endpoint, True), (endpoint, False)]


def test_stream_yields_deltas_then_exactly_one_done(routing_env, pro_tenant):
    events = collect(tenant=pro_tenant, tier="auto", request=ask("hi"))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    dones = [e for e in events if isinstance(e, Done)]
    assert len(deltas) == 12
    assert len(dones) == 1 and events[-1] is dones[0]
    assert "".join(d.text for d in deltas) == dones[0].result.text


def test_routing_facts_come_once_just_before_the_first_delta(routing_env, pro_tenant):
    routing_env.scenario("claude-opus-4-6", status=529)
    events = collect(tenant=pro_tenant, tier="max", request=ask("hi"))
    routed = [i for i, e in enumerate(events) if isinstance(e, Routed)]
    first_delta = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert routed == [first_delta - 1]
    facts, result = events[routed[0]], events[-1].result
    assert (facts.endpoint, facts.upstream_model, facts.provider, facts.tier, facts.fallback_count) == (
        result.endpoint, result.upstream_model, result.provider, "max", 1)
    assert facts.endpoint == "claude-sonnet-4-6"


@pytest.mark.parametrize("stream", [True, False])
def test_cache_tokens_are_normalized_for_anthropic(routing_env, pro_tenant, stream):
    routing_env.scenario("claude-opus-4-6", cache_read_tokens=100, cache_write_tokens=40)
    result = complete(tenant=pro_tenant, tier="max", request=ask("hello there", stream=stream))
    assert result.usage == Usage(input_tokens=3, output_tokens=12, cache_read_tokens=100, cache_write_tokens=40)


@pytest.mark.parametrize("stream,usage_in_choice", [(True, False), (True, True), (False, False)])
def test_cached_tokens_are_excluded_from_input_for_openai_compatible(routing_env, pro_tenant, stream,
                                                                     usage_in_choice):
    routing_env.scenario("kimi-k2.5", cache_read_tokens=50, usage_in_choice=usage_in_choice)
    result = complete(tenant=pro_tenant, tier="auto", request=ask("hello there", stream=stream))
    assert result.usage == Usage(input_tokens=3, output_tokens=12, cache_read_tokens=50)


def test_max_tokens_cut_gives_length_finish(routing_env, pro_tenant):
    result = complete(tenant=pro_tenant, tier="max", request=ask("hello", max_tokens=5))
    assert result.finish_reason == "length"
    assert result.usage.output_tokens == 5
    assert routing_env.requests()[0]["max_tokens"] == 5


def test_system_prompt_reaches_both_protocols(routing_env, pro_tenant):
    for tier in ("max", "auto"):
        result = complete(tenant=pro_tenant, tier=tier, request=ask("hi", system="You are terse and kind"))
        # The fake counts the system prompt's words in the input: 5 + ("hi" + 1).
        assert result.usage.input_tokens == 7
