"""What an endpoint must be able to do beyond text (routing.policy.Needs): images go only to vision endpoints,
image URLs only to providers that fetch them, tools with a response format not where the format is a forced
tool; with no endpoint left, a RequestInvalid in words. Prompt-cache breakpoints through the real routing path."""

import pytest

from routing.catalog import catalog_invalidate
from routing.errors import RequestInvalid
from routing.models import ModelEndpoint
from routing.types import (
    ChatMessage,
    ChatRequest,
    ImageBlock,
    ResponseFormat,
    TextBlock,
    ToolSpec,
)

from .conftest import complete

pytestmark = pytest.mark.django_db

PNG = ImageBlock(media_type="image/png", data="iVBORw0KGgo=", size=8)
URL = ImageBlock(url="https://example.com/cat.png")


def _image_request(image: ImageBlock) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage("user", "What is it?", blocks=(TextBlock("What is it?"), image))],
                       stream=False)


def test_an_image_goes_to_the_first_vision_endpoint(routing_env, pro_tenant):
    ModelEndpoint.objects.filter(slug="kimi-k2.5").update(vision=False)
    catalog_invalidate()
    result = complete(tenant=pro_tenant, tier="auto", request=_image_request(PNG))
    assert result.endpoint == "claude-haiku-4-5"
    assert "skipped kimi-k2.5: no vision" in result.reason
    [sent] = routing_env.requests()
    assert sent["images"] == 1 and sent["messages"][0]["content"][1]["source"]["type"] == "base64"


def test_no_vision_endpoint_in_the_tier_is_a_clear_refusal(routing_env, pro_tenant):
    ModelEndpoint.objects.update(vision=False)
    catalog_invalidate()
    with pytest.raises(RequestInvalid, match="No Auto model can read images"):
        complete(tenant=pro_tenant, tier="auto", request=_image_request(PNG))
    assert routing_env.requests() == []


def test_an_image_url_skips_providers_that_take_base64_only(routing_env, pro_tenant):
    result = complete(tenant=pro_tenant, tier="auto", request=_image_request(URL))
    assert result.endpoint == "claude-haiku-4-5"
    assert "skipped kimi-k2.5: takes images as base64 data only" in result.reason
    [sent] = routing_env.requests()
    assert sent["messages"][0]["content"][1]["source"] == {"type": "url", "url": "https://example.com/cat.png"}


def test_an_image_url_no_endpoint_can_fetch_asks_for_base64(routing_env, pro_tenant):
    ModelEndpoint.objects.filter(slug="claude-haiku-4-5").update(vision=False)
    catalog_invalidate()
    with pytest.raises(RequestInvalid, match="send the image as base64"):
        complete(tenant=pro_tenant, tier="auto", request=_image_request(URL))
    assert routing_env.requests() == []


def test_tools_with_a_response_format_skip_anthropic(routing_env, pro_tenant):
    request = ChatRequest(messages=[ChatMessage("user", "Weather?")], stream=False,
                          tools=(ToolSpec("get_weather", {"type": "object"}),),
                          response_format=ResponseFormat("json_object"))
    result = complete(tenant=pro_tenant, tier="max", request=request)
    assert result.endpoint == "kimi-k2.5"
    assert "skipped claude-opus-4-6: structured output there is a forced tool" in result.reason


def test_a_text_request_needs_nothing(pro_tenant):
    from routing.core import request_needs

    assert request_needs(ChatRequest(messages=[ChatMessage("user", "hi")])) is None


def test_a_cache_breakpoint_writes_the_stable_history_then_reads_it(routing_env, pro_tenant):
    """A chat turn on MAX with cache_breakpoint: the first turn writes the prefix up to the last assistant message,
    the next turn reads it and writes only what was added; the usage is priced at the cache prices."""
    history = [ChatMessage("user", "one two three"), ChatMessage("assistant", "four five"),
               ChatMessage("user", "six")]
    first = complete(tenant=pro_tenant, tier="max",
                     request=ChatRequest(messages=history, cache_breakpoint=True, stream=True))
    # Prefix: "one two three" (3 + 1) and "four five" (2 + 1); after it "six" (1 + 1).
    assert (first.usage.cache_write_tokens, first.usage.cache_read_tokens, first.usage.input_tokens) == (7, 0, 2)
    history += [ChatMessage("assistant", "seven"), ChatMessage("user", "eight nine")]
    second = complete(tenant=pro_tenant, tier="max",
                      request=ChatRequest(messages=history, cache_breakpoint=True, stream=False))
    assert (second.usage.cache_read_tokens, second.usage.cache_write_tokens, second.usage.input_tokens) == (7, 4, 3)
    prices = second.prices
    expected = (3 * prices.input + second.usage.output_tokens * prices.output + 4 * prices.cache_write
                + 7 * prices.cache_read) / 1_000_000
    assert second.cost == expected.quantize(second.cost)


@pytest.mark.parametrize("tier", ["auto", "max"])
def test_a_tool_call_stream_is_routed_then_started_then_accumulated(routing_env, pro_tenant, tier):
    """Routed comes before the first tool-call event as before the first text; the Done result holds the calls
    whole, as the JSON answer of the same request does."""
    from routing.types import Done, Routed, ToolCall, ToolCallDelta, ToolCallStart

    from .conftest import collect

    upstream = {"auto": "kimi-k2.5", "max": "claude-opus-4-6"}[tier]
    routing_env.scenario(upstream, tool_calls=[{"name": "get_weather", "arguments": {"city": "Nelson"}},
                                               {"name": "get_weather", "arguments": {"city": "Napier"}}])
    tools = (ToolSpec("get_weather", {"type": "object", "properties": {"city": {"type": "string"}}}),)
    request = ChatRequest(messages=[ChatMessage("user", "Weather?")], tools=tools, stream=True)
    events = collect(tenant=pro_tenant, tier=tier, request=request)
    kinds = [type(e) for e in events if not type(e).__name__ == "UsageUpdate"]
    assert kinds[:2] == [Routed, ToolCallStart] and kinds[-1] is Done
    assert sum(k is ToolCallStart for k in kinds) == 2 and ToolCallDelta in kinds
    streamed = events[-1].result
    whole = complete(tenant=pro_tenant, tier=tier, request=ChatRequest(messages=request.messages, tools=tools,
                                                                       stream=False))
    for result in (streamed, whole):
        assert result.finish_reason == "tool_calls" and result.text == ""
        assert [(c.name, c.arguments) for c in result.tool_calls] == [
            ("get_weather", '{"city":"Nelson"}'), ("get_weather", '{"city":"Napier"}')]
    assert all(isinstance(c, ToolCall) and c.id for c in streamed.tool_calls)
    assert streamed.usage.output_tokens == whole.usage.output_tokens > 0


def test_a_forced_tool_choice_skips_kimi_and_is_refused_in_words_when_nothing_is_left(routing_env, pro_tenant):
    from routing.types import ToolChoice

    tools = (ToolSpec("get_weather", {"type": "object"}),)
    request = ChatRequest(messages=[ChatMessage("user", "Weather?")], stream=False, tools=tools,
                          tool_choice=ToolChoice("required"))
    result = complete(tenant=pro_tenant, tier="auto", request=request)
    assert result.endpoint == "claude-haiku-4-5" and "skipped kimi-k2.5: takes no forced tool_choice" in result.reason
    assert routing_env.requests()[0]["params"]["tool_choice"] == {"type": "any"}
    ModelEndpoint.objects.filter(slug="claude-haiku-4-5").update(enabled=False)
    catalog_invalidate()
    with pytest.raises(RequestInvalid, match="forced tool_choice"):
        complete(tenant=pro_tenant, tier="auto", request=request)


def test_json_schema_goes_as_it_is_to_an_openai_compatible_model_that_takes_it(routing_env, enterprise_tenant):
    """Kimi is skipped for json_schema (JSON mode only); another OpenAI-compatible model gets the format as sent."""
    from routing.models import ProviderConfig

    ModelEndpoint.objects.create(slug="gpt-test", upstream_model="gpt-4o-mini", context_window=128_000,
                                 provider=ProviderConfig.objects.get(slug="moonshot"), price_input=1,
                                 price_output=2, price_cache_write=1, price_cache_read=0)
    catalog_invalidate()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    request = ChatRequest(messages=[ChatMessage("user", "A number?")], stream=False,
                          response_format=ResponseFormat("json_schema", schema=schema, name="number", strict=True))
    result = complete(tenant=enterprise_tenant, tier="auto", request=request, model="gpt-test")
    assert result.text == '{"n":1}'
    assert routing_env.requests()[0]["params"]["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "number", "schema": schema, "strict": True}}
    auto = complete(tenant=enterprise_tenant, tier="auto", request=request)
    assert auto.endpoint == "claude-haiku-4-5" and "skipped kimi-k2.5: takes no json_schema" in auto.reason
