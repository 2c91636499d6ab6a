"""Tool calling, structured output, images and cache breakpoints against wire examples from the providers' docs
(tests/wire/, each file names its source). Pure: no I/O, no database."""

import json

import orjson

from proxy.formatting import AnthropicEvents, OpenAIChunks, RouteFacts, anthropic_message, openai_completion
from proxy.parsing import parse_anthropic, parse_openai
from routing.providers import JSON_TOOL, anthropic, openai_compat
from routing.types import (
    ChatMessage,
    ChatRequest,
    ImageBlock,
    ResponseFormat,
    TextBlock,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)

from .test_wire import WIRE, load, parse_sse


def _tool_events(adapter, name):
    """The stream's text and its tool calls accumulated from ToolCallStart / ToolCallDelta: (text, calls, finish)."""
    from routing.sse import SSEDecoder

    state, decoder = adapter.new_stream_state(), SSEDecoder()
    text, calls, finish = "", [], None
    for line in (WIRE / name).read_text().splitlines():
        item = decoder.feed(line)
        for event in adapter.parse_stream_event(state, *item) if item else ():
            if isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, ToolCallStart):
                assert event.index == len(calls)
                calls.append([event.id, event.name, ""])
            elif isinstance(event, ToolCallDelta):
                calls[event.index][2] += event.arguments
            elif type(event).__name__ == "Finish":
                finish = event.finish_reason
    return text, [ToolCall(*c) for c in calls], finish


def test_anthropic_tool_use_message():
    parsed = anthropic.parse_response(load("anthropic_message_tool_use.json")["body"])
    assert parsed.text == "I'll check the current weather in San Francisco for you."
    assert parsed.finish_reason == "tool_calls"
    assert parsed.tool_calls == (ToolCall("toolu_01A09q90qw90lq917835lq9", "get_weather",
                                          '{"location":"San Francisco, CA","unit":"celsius"}'),)


def test_anthropic_tool_use_stream_accumulates_its_input_json():
    text, calls, finish = _tool_events(anthropic, "anthropic_stream_tool_use.sse")
    assert text == "Okay, let's check the weather for San Francisco, CA:"
    [call] = calls
    assert (call.id, call.name, finish) == ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", "tool_calls")
    assert json.loads(call.arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert parse_sse(anthropic, "anthropic_stream_tool_use.sse")[2] == Usage(input_tokens=472, output_tokens=89)


def test_openai_tool_calls_completion():
    parsed = openai_compat.parse_response(load("openai_chat_completion_tool_calls.json")["body"])
    assert (parsed.text, parsed.finish_reason) == ("", "tool_calls")
    assert parsed.tool_calls == (ToolCall("call_abc123", "get_current_weather", '{\n"location": "Boston, MA"\n}'),)


def test_openai_tool_calls_stream_by_index():
    text, calls, finish = _tool_events(openai_compat, "openai_stream_tool_calls.sse")
    assert (text, finish) == ("", "tool_calls")
    assert calls == [ToolCall("call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", '{"location":"Paris, France"}'),
                     ToolCall("call_H1nOLdpbW3cG5CEp1cdlAjMW", "get_time", "{}")]  # no argument text: "{}"


def test_a_call_without_arguments_is_closed_before_the_next_call_starts():
    """"{}" for an argument-less call comes before the next call's start, never after it (the Anthropic endpoint
    streams one block after another)."""
    state, events = openai_compat.new_stream_state(), []
    for calls in ([{"index": 0, "id": "a", "type": "function", "function": {"name": "now", "arguments": ""}}],
                  [{"index": 1, "id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}}]):
        chunk = {"choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None}]}
        events += openai_compat.parse_stream_event(state, None, json.dumps(chunk))
    events += openai_compat.parse_stream_event(state, None, "[DONE]")
    assert [(type(e).__name__, getattr(e, "index", None)) for e in events] == [
        ("ToolCallStart", 0), ("ToolCallDelta", 0), ("ToolCallStart", 1), ("ToolCallDelta", 1), ("Finish", None)]


def _body(adapter, request: ChatRequest) -> dict:
    return adapter.build_request(base_url="https://x", api_key="k", model="m", request=request, stream=False,
                                 max_tokens=300).body


def test_an_openai_tool_loop_becomes_the_anthropic_request_the_docs_show():
    example = load("request_tool_loop.json")
    call = parse_openai(orjson.dumps(example["openai"]))
    body = _body(anthropic, call.request)
    expected = example["anthropic"]
    for key in ("system", "messages", "tools", "tool_choice"):
        assert body[key] == expected[key], key


def test_an_anthropic_tool_loop_becomes_the_openai_request_the_docs_show():
    example = load("request_tool_loop.json")
    call = parse_anthropic(orjson.dumps(example["anthropic"]))
    body = _body(openai_compat, call.request)
    expected = example["openai"]
    for key in ("messages", "tools", "tool_choice", "parallel_tool_calls"):
        assert body[key] == expected[key], key


def _facts():
    return RouteFacts(request_id="r1", tier="max", endpoint="claude-opus-4-6", upstream_model="claude-opus-4-6",
                      fallback_count=0)


def test_the_proxy_answers_tool_calls_in_each_protocols_shape():
    calls = (ToolCall("toolu_1", "get_weather", '{"location":"Paris"}'),)
    openai_body = orjson.loads(openai_completion(_facts(), "", "tool_calls", Usage(), 0, 0, calls))
    choice = openai_body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [{"id": "toolu_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"location":"Paris"}'}}]
    message = orjson.loads(anthropic_message(_facts(), "", "tool_calls", Usage(), 0, 0, None, calls))
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                   "input": {"location": "Paris"}}]


def _sse_data(raw: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {")]


def test_the_proxy_streams_tool_calls_as_each_protocol_does():
    events = AnthropicEvents(_facts())
    raw = events.first("Checking.", 10) + events.tool_start(0, "toolu_1", "get_weather") \
        + events.tool_arguments(0, '{"location":') + events.tool_arguments(0, '"Paris"}') \
        + events.finish("tool_calls", Usage(), 0, 0)
    kinds = [(e["type"], e.get("index")) for e in _sse_data(raw) if e["type"] != "ping"]
    assert kinds == [("message_start", None), ("content_block_start", 0), ("content_block_delta", 0),
                     ("content_block_stop", 0), ("content_block_start", 1), ("content_block_delta", 1),
                     ("content_block_delta", 1), ("content_block_stop", 1), ("message_delta", None),
                     ("message_stop", None)]
    data = [e for e in _sse_data(raw) if e["type"] != "ping"]
    assert data[4]["content_block"] == {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    assert data[5]["delta"] == {"type": "input_json_delta", "partial_json": '{"location":'}
    assert data[-2]["delta"]["stop_reason"] == "tool_use"
    chunks = OpenAIChunks(_facts(), include_usage=False)
    raw = chunks.first_tool(0, "toolu_1", "get_weather") + chunks.tool_arguments(0, '{"location":"Paris"}') \
        + chunks.finish("tool_calls")
    deltas = [c["choices"][0]["delta"] for c in _sse_data(raw)]
    assert deltas[0] == {"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}
    assert deltas[1] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"location":"Paris"}'}}]}
    assert _sse_data(raw)[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_structured_output_on_anthropic_is_a_forced_tool_answered_as_text():
    """OpenAI's response_format (https://platform.openai.com/docs/guides/structured-outputs) as Anthropic's "JSON
    output" tool pattern: a tool whose input_schema is the schema, forced with tool_choice
    (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use#forcing-tool-use)."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    request = ChatRequest(messages=[ChatMessage("user", "Capital of France?")],
                          response_format=ResponseFormat("json_schema", schema=schema, name="capital"))
    body = _body(anthropic, request)
    assert body["tools"][-1]["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    answer = {"content": [{"type": "tool_use", "id": "toolu_9", "name": JSON_TOOL, "input": {"city": "Paris"}}],
              "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 3}}
    parsed = anthropic.parse_response(answer)
    assert (parsed.text, parsed.finish_reason, parsed.tool_calls) == ('{"city":"Paris"}', "stop", ())
    assert _body(openai_compat, request)["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "capital", "schema": schema}}


def test_images_in_each_protocols_form():
    request = ChatRequest(messages=[ChatMessage("user", "What is this?", blocks=(
        TextBlock("What is this?"), ImageBlock(media_type="image/png", data="iVBORw0KGgo=", size=8),
        ImageBlock(url="https://example.com/cat.jpg")))])
    content = _body(anthropic, request)["messages"][0]["content"]
    assert content[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                      "data": "iVBORw0KGgo="}}
    assert content[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    parts = _body(openai_compat, request)["messages"][0]["content"]
    assert parts[1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert parts[2] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    assert not openai_compat.accepts_image_urls("kimi-k2.5") and openai_compat.accepts_image_urls("gpt-4o")


def test_an_image_question_becomes_each_providers_request_the_docs_show():
    example = load("request_images.json")
    for source, target, adapter in (("openai", "anthropic", anthropic), ("anthropic", "openai", openai_compat)):
        parse = parse_openai if source == "openai" else parse_anthropic
        body = _body(adapter, parse(orjson.dumps(example[source])).request)
        assert body["messages"] == example[target]["messages"], source


def test_a_cache_breakpoint_goes_at_the_end_of_the_stable_history_for_anthropic_only():
    """cache_control on the last block of the stable prefix
    (https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching, "multi-turn conversation" example)."""
    request = ChatRequest(messages=[ChatMessage("user", "one"), ChatMessage("assistant", "two"),
                                    ChatMessage("user", "three")], cache_breakpoint=True)
    messages = _body(anthropic, request)["messages"]
    assert messages[1]["content"] == [{"type": "text", "text": "two", "cache_control": {"type": "ephemeral"}}]
    assert messages[0]["content"] == "one" and messages[2]["content"] == "three"
    assert "cache_control" not in json.dumps(_body(openai_compat, request))


def test_a_strict_tool_stays_strict_at_both_providers():
    """OpenAI's function `strict` and Anthropic's tool `strict` (structured outputs) are the same promise."""
    from routing.types import ToolSpec

    request = ChatRequest(messages=[ChatMessage("user", "hi")],
                          tools=(ToolSpec("f", {"type": "object"}, strict=True),))
    assert _body(anthropic, request)["tools"] == [{"name": "f", "input_schema": {"type": "object"}, "strict": True}]
    assert _body(openai_compat, request)["tools"] == [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object"}, "strict": True}}]
