"""Request parsing: what both protocols accept, and the clear 400s for what we cannot honour."""

import orjson
import pytest

from proxy.errors import ProxyError
from proxy.parsing import parse_anthropic, parse_openai


def _openai(**fields):
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **fields}
    return parse_openai(orjson.dumps(body))


def _anthropic(**fields):
    body = {"model": "max", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}], **fields}
    return parse_anthropic(orjson.dumps(body))


def test_openai_request_maps_onto_the_core_request():
    call = _openai(
        model="kiwiclaw/max",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "No jokes."}]},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "more"},
        ],
        max_completion_tokens=100, temperature=0.5, top_p=0.9, stop="END", stream=True,
        stream_options={"include_usage": True}, user="u1", seed=3,
    )
    assert (call.tier, call.endpoint, call.stream, call.include_usage) == ("max", None, True, True)
    req = call.request
    assert req.system == "Be brief.\n\nNo jokes."
    assert [(m.role, m.content) for m in req.messages] == [("user", "a\nb"), ("assistant", "ok"), ("user", "more")]
    assert (req.max_tokens, req.temperature, req.top_p, req.stop) == (100, 0.5, 0.9, ("END",))
    assert (req.seed, call.end_user) == (3, "u1")


def test_openai_model_that_is_not_a_tier_is_an_endpoint_slug():
    call = _openai(model="kimi-k2-5")
    assert (call.tier, call.endpoint) == (None, "kimi-k2-5")


@pytest.mark.parametrize("fields, param", [
    ({"n": 2}, "n"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
     "tools[0].function.parameters"),
    ({"tools": [{"type": "function", "function": {"parameters": {"type": "object"}}}]}, "tools[0].function.name"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 12}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"logprobs": True}, "logprobs"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frobnicate": 1}, "frobnicate"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[0].image_url"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0].tool_call_id"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
    ({"model": ""}, "model"),
    ({"temperature": 3}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"stream": "yes"}, "stream"),
    ({"store": True}, "store"),
    ({"metadata": {"k": "v"}}, "metadata"),
    ({"service_tier": "priority"}, "service_tier"),
    ({"verbosity": "low"}, "verbosity"),
    ({"prompt_cache_key": "k"}, "prompt_cache_key"),
    ({"parallel_tool_calls": "no"}, "parallel_tool_calls"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"seed": 1.5}, "seed"),
    ({"user": "x" * 257}, "user"),
    ({"user": "has space"}, "user"),
    ({"safety_identifier": "a", "user": "b"}, "safety_identifier"),
    ({"messages": [{"role": "user", "content": "hi", "name": "bob"}]}, "messages[0].name"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x", "extra": 1}]}]},
     "messages[0].content[0].extra"),
])
def test_openai_unsupported_or_malformed_fields_are_refused_by_name(fields, param):
    with pytest.raises(ProxyError) as info:
        _openai(**fields)
    assert info.value.case == "invalid"
    assert info.value.param == param


def test_openai_harmless_defaults_are_accepted():
    call = _openai(n=1, response_format={"type": "text"}, presence_penalty=0, frequency_penalty=0,
                   tool_choice="none", tools=[], logprobs=False, store=False, metadata={}, service_tier="auto",
                   verbosity="medium", user="", messages=[{"role": "assistant", "content": "a", "refusal": None,
                                                           "tool_calls": [], "annotations": []},
                                                          {"role": "user", "content": "hi"}])
    assert call.request.messages[-1].content == "hi"
    assert call.end_user is None


def test_openai_safety_identifier_is_the_end_user_id():
    assert _openai(safety_identifier="h-123").end_user == "h-123"
    assert _openai(safety_identifier="h-123", user="h-123").end_user == "h-123"


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"text"'])
def test_body_that_is_not_a_json_object_is_refused(body):
    with pytest.raises(ProxyError) as info:
        parse_openai(body)
    assert info.value.case == "invalid"


def test_anthropic_request_maps_onto_the_core_request():
    call = _anthropic(system=[{"type": "text", "text": "Be brief."}],
                      stop_sequences=["STOP"], temperature=0.2, stream=True, metadata={"user_id": "u9"})
    assert (call.tier, call.stream, call.end_user) == ("max", True, "u9")
    assert (call.request.system, call.request.stop, call.request.max_tokens) == ("Be brief.", ("STOP",), 50)


@pytest.mark.parametrize("fields, param", [
    ({"max_tokens": None}, "max_tokens"),
    ({"tools": [{"name": "t", "input_schema": {}}]}, "tools.0.input_schema"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
    ({"top_k": 5}, "top_k"),
    ({"temperature": 1.5}, "temperature"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages.0"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "messages.0.content.0.source"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
     "messages.0.content.0.type"),
    ({"unknown_field": True}, "unknown_field"),
    ({"cache_control": {"type": "persistent"}}, "cache_control"),
    ({"system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2d"}}]},
     "system.0.cache_control"),
    ({"metadata": {"user_id": "u", "team": "t"}}, "metadata.team"),
    ({"metadata": {"user_id": "é"}}, "metadata.user_id"),
    ({"service_tier": "priority"}, "service_tier"),
    ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
    ({"output_config": {"effort": "high"}}, "output_config.effort"),
    ({"output_config": {"format": {"type": "json_schema", "schema": {"type": 5}}}}, "output_config.format.schema"),
])
def test_anthropic_unsupported_or_malformed_fields_are_refused_by_name(fields, param):
    with pytest.raises(ProxyError) as info:
        _anthropic(**fields)
    assert info.value.case == "invalid"
    assert info.value.param == param


def test_anthropic_service_tiers_on_standard_capacity_are_accepted():
    assert _anthropic(service_tier="standard_only").request.messages[0].content == "hi"
    assert _anthropic(service_tier="auto", metadata={"user_id": None}).end_user is None


def test_one_stop_sequence_limit_for_both_protocols_and_the_core():
    from routing.core import MAX_STOP_SEQUENCES

    stops = [f"s{i}" for i in range(MAX_STOP_SEQUENCES)]
    assert _openai(stop=stops).request.stop == tuple(stops)
    assert _anthropic(stop_sequences=stops).request.stop == tuple(stops)
    for parse, name in ((_openai, "stop"), (_anthropic, "stop_sequences")):
        with pytest.raises(ProxyError) as info:
            parse(**{name: [*stops, "one more"]})
        assert info.value.param == name and str(MAX_STOP_SEQUENCES) in info.value.message


@pytest.mark.parametrize("version, ok", [("2023-06-01", True), ("2026-10-21", True), (None, True),
                                         ("2023-01-01", False), ("2099-01-01", False), ("", False)])
def test_anthropic_version_header(version, ok):
    from proxy.parsing import check_anthropic_version

    headers = {} if version is None else {"anthropic-version": version}
    if ok:
        assert check_anthropic_version(headers) == (version or "2023-06-01")
    else:
        with pytest.raises(ProxyError) as info:
            check_anthropic_version(headers)
        assert info.value.param == "anthropic-version"


@pytest.mark.parametrize("name", ["temperature", "top_p"])
def test_anthropic_version_2026_10_21_has_no_sampling_parameters(name):
    assert getattr(_anthropic(**{name: 0.5}).request, name) == 0.5  # 2023-06-01
    with pytest.raises(ProxyError) as info:
        parse_anthropic(orjson.dumps({"model": "max", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                                      name: 1.0}), "2026-10-21")
    assert info.value.param == name


def test_the_rate_limit_estimate_counts_tool_definitions_and_images():
    plain = _openai(messages=[{"role": "user", "content": "hi"}]).estimated_input_tokens()
    tool = {"type": "function", "function": {"name": "lookup", "description": "x" * 400,
                                             "parameters": {"type": "object"}}}
    assert _openai(messages=[{"role": "user", "content": "hi"}], tools=[tool]).estimated_input_tokens() > plain + 100
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    with_image = _openai(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}])
    assert with_image.estimated_input_tokens() == plain + 1600
