"""Bad tools, tool results, images and schemas: a 400 naming the problem, nothing sent upstream, no usage row.

OpenAI error bodies name the field in `param`; Anthropic's have no `param`, so the message names it in backquotes
(as the field matrix reads it)."""

import base64

import httpx
import pytest

from billing.models import UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

OBJ = {"type": "object", "properties": {"q": {"type": "string"}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


def _openai_tool(name="search", parameters=OBJ):
    function = {"parameters": parameters}
    if name is not None:
        function["name"] = name
    return {"type": "function", "function": function}


ASK = {"role": "user", "content": "hi"}
CALLED = {"role": "assistant", "content": None,
          "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{}"}}]}

OPENAI_BAD = {
    "schema not an object": ({"tools": [_openai_tool(parameters=["q"])]}, "tools[0].function.parameters"),
    "schema not JSON Schema": ({"tools": [_openai_tool(parameters={"type": "object", "properties": 3})]},
                               "tools[0].function.parameters"),
    "schema of a string": ({"tools": [_openai_tool(parameters={"type": "string"})]}, "tools[0].function.parameters"),
    "tool without a name": ({"tools": [_openai_tool(name=None)]}, "tools[0].function.name"),
    "duplicate tool names": ({"tools": [_openai_tool(), _openai_tool()]}, "tools[1].function.name"),
    "reserved tool name": ({"tools": [_openai_tool(name="kiwiclaw_json_answer")]}, "tools[0].function.name"),
    "tool_choice names no tool": ({"tools": [_openai_tool()],
                                   "tool_choice": {"type": "function", "function": {"name": "browse"}}},
                                  "tool_choice.function.name"),
    "result for an unknown id": ({"tools": [_openai_tool()], "messages": [
        ASK, CALLED, {"role": "tool", "tool_call_id": "call_2", "content": "x"}]}, "messages[2].tool_call_id"),
    "arguments not JSON": ({"messages": [ASK, {**CALLED, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "search", "arguments": "{nope"}}]}]},
        "messages[1].tool_calls[0].function.arguments"),
    "image of the wrong type": ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/tiff;base64,{PNG}"}}]}]},
        "messages[0].content[0].image_url"),
    "image that is not base64": ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!!"}}]}]},
        "messages[0].content[0].image_url"),
    "image over the size limit": ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * (7 * 1024 * 1024)}}]}]},
        "messages[0].content[0].image_url"),
    "image over plain http": ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://example.com/cat.png"}}]}]},
        "messages[0].content[0].image_url"),
    "invalid json_schema": ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object", "required": "q"}}}}, "response_format.json_schema.schema"),
}

ANTHROPIC_BAD = {
    "schema not JSON Schema": ({"tools": [{"name": "search", "input_schema": {"type": "object",
                                                                              "properties": 3}}]},
                               "tools.0.input_schema"),
    "schema missing": ({"tools": [{"name": "search"}]}, "tools.0.input_schema"),
    "tool without a name": ({"tools": [{"input_schema": OBJ}]}, "tools.0.name"),
    "duplicate tool names": ({"tools": [{"name": "s", "input_schema": OBJ}, {"name": "s", "input_schema": OBJ}]},
                             "tools.1.name"),
    "tool_choice names no tool": ({"tools": [{"name": "s", "input_schema": OBJ}],
                                   "tool_choice": {"type": "tool", "name": "browse"}}, "tool_choice.name"),
    "result for an unknown id": ({"tools": [{"name": "s", "input_schema": OBJ}], "messages": [
        ASK, {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "s", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}]},
        "messages.2.content.0.tool_use_id"),
    "image of the wrong type": ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": PNG}}]}]},
        "messages.0.content.0.source"),
    "image over the size limit": ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "A" * (7 * 1024 * 1024)}}]}]}, "messages.0.content.0.source"),
}


def _post(server, key, path, body):
    headers = {"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=20)


@pytest.mark.parametrize("case", list(OPENAI_BAD))
def test_openai_bad_input_is_refused_naming_the_field(server, fake_provider, alice_key, case, settings):
    fields, param = OPENAI_BAD[case]
    answer = _post(server, alice_key, "/v1/chat/completions", {"model": "auto", "messages": [ASK], **fields})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param, answer.text
    assert fake_provider.requests() == [] and UsageRecord.objects.count() == 0


@pytest.mark.parametrize("case", list(ANTHROPIC_BAD))
def test_anthropic_bad_input_is_refused_naming_the_field(server, fake_provider, alice_key, case):
    fields, param = ANTHROPIC_BAD[case]
    answer = _post(server, alice_key, "/v1/messages", {"model": "max", "max_tokens": 20, "messages": [ASK],
                                                       **fields})
    assert answer.status_code == 400, answer.text
    assert f"`{param}`" in answer.json()["error"]["message"], answer.text
    assert fake_provider.requests() == [] and UsageRecord.objects.count() == 0
