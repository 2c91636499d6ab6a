"""Tool calling through both endpoints with the official SDKs, answered by both provider families (model "auto" is
Kimi on the OpenAI-compatible protocol, "max" is Claude on Anthropic's), streaming and not: a two-step loop (call →
tool result → answer), parallel calls, and a streamed answer that accumulates to the non-streamed one.

Wire shapes: https://platform.openai.com/docs/guides/function-calling,
https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use.
"""

import json

import pytest

from billing.models import UsageRecord

from .conftest import usage_rows

pytestmark = pytest.mark.django_db(transaction=True)

UPSTREAM = {"auto": "kimi-k2.5", "max": "claude-opus-4-6"}
PROTOCOL = {"auto": "openai", "max": "anthropic"}  # the protocol the fake answered in
WEATHER = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a place.",
                                                  "parameters": WEATHER}},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather of a place.", "input_schema": WEATHER},
                   {"name": "get_time", "input_schema": {"type": "object"}}]
PARIS = [{"name": "get_weather", "arguments": {"location": "Paris"}}]
TWO = [{"name": "get_weather", "arguments": {"location": "Paris"}},
       {"name": "get_weather", "arguments": {"location": "Wellington, NZ"}}]


def _openai_call(client, stream: bool, **kwargs):
    """The completion's message as the SDK gives it; streamed answers accumulated by the SDK's own helper."""
    if not stream:
        completion = client.chat.completions.create(**kwargs)
    else:
        with client.chat.completions.stream(**kwargs) as events:
            completion = events.get_final_completion()
    return completion.choices[0]


def _anthropic_call(client, stream: bool, **kwargs):
    if not stream:
        return client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as events:
        return events.get_final_message()


def _tool_result_upstream(fake_provider, tier: str, call_id: str) -> dict:
    """The tool result as the provider received it, in its own protocol's place."""
    last = fake_provider.requests()[-1]
    assert last["protocol"] == PROTOCOL[tier]
    if PROTOCOL[tier] == "openai":
        [result] = [m for m in last["messages"] if m["role"] == "tool"]
        assert result["tool_call_id"] == call_id
        return result
    user = last["messages"][-1]
    [result] = [b for b in user["content"] if b["type"] == "tool_result"]
    assert result["tool_use_id"] == call_id
    return result


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("tier", ["auto", "max"])
def test_openai_protocol_tool_loop(openai_client, fake_provider, tier, stream):
    fake_provider.scenario(UPSTREAM[tier], tool_calls=PARIS)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    choice = _openai_call(openai_client, stream, model=tier, messages=messages, tools=OPENAI_TOOLS)
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert (call.type, call.function.name, json.loads(call.function.arguments)) == \
        ("function", "get_weather", {"location": "Paris"})
    assert call.id.startswith("call_fake" if PROTOCOL[tier] == "openai" else "toolu_fake")  # the provider's id
    assert not choice.message.content
    upstream = fake_provider.requests()[-1]
    assert [t.get("name") or t["function"]["name"] for t in upstream["params"]["tools"]] == ["get_weather", "get_time"]

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18 C, light rain"}]
    final = _openai_call(openai_client, stream, model=tier, messages=messages, tools=OPENAI_TOOLS)
    assert final.finish_reason == "stop" and final.message.content.startswith(f"Echo from {UPSTREAM[tier]}")
    assert not final.message.tool_calls
    result = _tool_result_upstream(fake_provider, tier, call.id)
    assert "18 C, light rain" in json.dumps(result)
    rows = usage_rows(2)
    assert [r.endpoint_slug for r in rows] == [UPSTREAM[tier]] * 2 and all(r.cost > 0 for r in rows)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("tier", ["auto", "max"])
def test_anthropic_protocol_tool_loop(anthropic_client, fake_provider, tier, stream):
    fake_provider.scenario(UPSTREAM[tier], tool_calls=PARIS)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    message = _anthropic_call(anthropic_client, stream, model=tier, max_tokens=200, messages=messages,
                              tools=ANTHROPIC_TOOLS)
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert (block.type, block.name, block.input) == ("tool_use", "get_weather", {"location": "Paris"})
    assert block.id.startswith("call_fake" if PROTOCOL[tier] == "openai" else "toolu_fake")

    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id,
                                               "content": "18 C, light rain", "is_error": False}]}]
    final = _anthropic_call(anthropic_client, stream, model=tier, max_tokens=200, messages=messages,
                            tools=ANTHROPIC_TOOLS)
    assert final.stop_reason == "end_turn"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text.startswith(f"Echo from {UPSTREAM[tier]}")
    result = _tool_result_upstream(fake_provider, tier, block.id)
    assert "18 C, light rain" in json.dumps(result)
    assert len(usage_rows(2)) == 2


@pytest.mark.parametrize("tier", ["auto", "max"])
def test_a_failed_tool_result_reaches_each_provider_as_an_error(anthropic_client, fake_provider, tier):
    """Anthropic's is_error stays a flag for Anthropic; the OpenAI API has none, so the text says it."""
    messages = [{"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                   "input": {"location": "Atlantis"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                              "content": "no such place"}]}]
    anthropic_client.messages.create(model=tier, max_tokens=50, messages=messages, tools=ANTHROPIC_TOOLS)
    result = _tool_result_upstream(fake_provider, tier, "toolu_1")
    if PROTOCOL[tier] == "openai":
        assert result["content"] == "Error: no such place"
    else:
        assert (result["is_error"], result["content"]) == (True, "no such place")
    assembled = fake_provider.requests()[-1]["messages"][1]
    if PROTOCOL[tier] == "openai":  # the call, as OpenAI carries it: arguments as JSON text
        assert assembled["tool_calls"][0]["function"] == {"name": "get_weather",
                                                          "arguments": '{"location":"Atlantis"}'}
    else:
        assert assembled["content"][0]["input"] == {"location": "Atlantis"}


@pytest.mark.parametrize("tier", ["auto", "max"])
def test_parallel_tool_calls_through_both_endpoints(openai_client, anthropic_client, fake_provider, tier):
    fake_provider.scenario(UPSTREAM[tier], tool_calls=TWO)
    for stream in (False, True):
        choice = _openai_call(openai_client, stream, model=tier, messages=[{"role": "user", "content": "Two?"}],
                              tools=OPENAI_TOOLS)
        assert [json.loads(c.function.arguments)["location"] for c in choice.message.tool_calls] == \
            ["Paris", "Wellington, NZ"]
        assert len({c.id for c in choice.message.tool_calls}) == 2
        message = _anthropic_call(anthropic_client, stream, model=tier, max_tokens=100, tools=ANTHROPIC_TOOLS,
                                  messages=[{"role": "user", "content": "Two?"}])
        assert [b.input["location"] for b in message.content] == ["Paris", "Wellington, NZ"]


@pytest.mark.parametrize("tier", ["auto", "max"])
def test_disabling_parallel_calls_reaches_the_provider_in_its_own_terms(openai_client, anthropic_client,
                                                                         fake_provider, tier):
    fake_provider.scenario(UPSTREAM[tier], tool_calls=TWO)
    choice = _openai_call(openai_client, False, model=tier, messages=[{"role": "user", "content": "Two?"}],
                          tools=OPENAI_TOOLS, parallel_tool_calls=False)
    assert len(choice.message.tool_calls) == 1
    params = fake_provider.requests()[-1]["params"]
    if PROTOCOL[tier] == "openai":
        assert params["parallel_tool_calls"] is False
    else:
        assert params["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    message = anthropic_client.messages.create(model=tier, max_tokens=100, tools=ANTHROPIC_TOOLS,
                                               messages=[{"role": "user", "content": "Two?"}],
                                               tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert len(message.content) == 1
    params = fake_provider.requests()[-1]["params"]
    if PROTOCOL[tier] == "openai":
        assert (params["tool_choice"], params["parallel_tool_calls"]) == ("auto", False)
    else:
        assert params["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


@pytest.mark.parametrize("tier", ["auto", "max"])
def test_tool_choice_maps_between_the_protocols(openai_client, anthropic_client, fake_provider, tier):
    """A named tool_choice is Anthropic's {type: tool}; Kimi takes no forced choice, so on Auto the request skips
    it for Claude Haiku. "none" reaches both providers in their own form."""
    named_openai = {"type": "function", "function": {"name": "get_time"}}
    raw = openai_client.chat.completions.with_raw_response.create(
        model=tier, messages=[{"role": "user", "content": "Time?"}], tools=OPENAI_TOOLS, tool_choice=named_openai)
    choice = raw.parse().choices[0]
    assert choice.message.tool_calls[0].function.name == "get_time"
    assert choice.message.tool_calls[0].function.arguments == "{}"
    assert raw.headers["x-kiwiclaw-model"] == {"auto": "claude-haiku-4-5", "max": "claude-opus-4-6"}[tier]
    assert fake_provider.requests()[-1]["params"]["tool_choice"] == {"type": "tool", "name": "get_time"}
    message = anthropic_client.messages.create(model=tier, max_tokens=50, tools=ANTHROPIC_TOOLS,
                                               messages=[{"role": "user", "content": "Time?"}],
                                               tool_choice={"type": "none"})
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"
    sent = fake_provider.requests()[-1]["params"]["tool_choice"]
    assert sent == ("none" if PROTOCOL[tier] == "openai" else {"type": "none"})


@pytest.mark.parametrize("tier", ["auto", "max"])
def test_a_streamed_tool_answer_accumulates_to_the_non_streamed_one(openai_client, anthropic_client,
                                                                    fake_provider, tier):
    fake_provider.scenario(UPSTREAM[tier], tool_calls=TWO, text="Let me look that up.")
    ask = {"model": tier, "messages": [{"role": "user", "content": "Two?"}], "tools": OPENAI_TOOLS}

    def plain(choice):
        data = choice.model_dump(exclude_none=True)
        for call in data["message"].get("tool_calls", ()):
            call.pop("id")  # the provider makes a new id per answer
            call.pop("index", None)
        data["message"].pop("parsed", None)
        data.pop("logprobs", None)
        return data

    assert plain(_openai_call(openai_client, True, **ask)) == plain(_openai_call(openai_client, False, **ask))
    ask = {"model": tier, "max_tokens": 100, "messages": [{"role": "user", "content": "Two?"}],
           "tools": ANTHROPIC_TOOLS}
    streamed, whole = _anthropic_call(anthropic_client, True, **ask), _anthropic_call(anthropic_client, False, **ask)
    strip = [{k: v for k, v in b.model_dump(exclude_none=True).items() if k != "id"} for b in whole.content]
    assert [{k: v for k, v in b.model_dump(exclude_none=True).items() if k != "id"} for b in streamed.content] == strip
    assert strip[0] == {"type": "text", "text": "Let me look that up.", } and len(strip) == 3
    assert (streamed.stop_reason, streamed.usage.output_tokens) == (whole.stop_reason, whole.usage.output_tokens)


def test_a_tool_call_delta_ends_fallback_like_text(openai_client, fake_provider):
    """The first tool-call fragment has gone to the client: a break after it is an error, not a fallback."""
    fake_provider.scenario("claude-opus-4-6", tool_calls=PARIS, error_after=2)
    chunks = []
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises its APIError for the error event
        for chunk in openai_client.chat.completions.create(model="max", stream=True, tools=OPENAI_TOOLS,
                                                           messages=[{"role": "user", "content": "Paris?"}]):
            chunks.append(chunk)
    assert chunks[0].choices[0].delta.tool_calls[0].function.name == "get_weather"
    assert fake_provider.models_called() == ["claude-opus-4-6"]
    [row] = usage_rows(1)
    assert row.endpoint_slug == "claude-opus-4-6"


def test_a_failure_before_the_first_tool_call_falls_back(openai_client, fake_provider):
    fake_provider.scenario("claude-opus-4-6", status=529)
    fake_provider.scenario("claude-sonnet-4-6", tool_calls=PARIS)
    choice = _openai_call(openai_client, True, model="max", messages=[{"role": "user", "content": "Paris?"}],
                          tools=OPENAI_TOOLS)
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert fake_provider.models_called() == ["claude-opus-4-6", "claude-sonnet-4-6"]
    assert UsageRecord.objects.count() <= 1 and usage_rows(1)[0].endpoint_slug == "claude-sonnet-4-6"
