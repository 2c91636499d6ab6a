"""response_format through the official openai SDK: forwarded to the OpenAI-compatible provider, emulated on
Anthropic by a forced tool whose input schema is the schema (answered back as the message's text), streaming
too. https://platform.openai.com/docs/guides/structured-outputs"""

import json

import jsonschema
import pytest
from pydantic import BaseModel

from routing.providers import JSON_TOOL

from .conftest import usage_rows

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"},
                                           "coastal": {"type": "boolean"}},
          "required": ["city", "population", "coastal"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "capital", "schema": SCHEMA, "strict": True}}
ASK = [{"role": "user", "content": "The capital of New Zealand, as JSON."}]


def _answer(client, stream: bool, **kwargs):
    if not stream:
        return client.chat.completions.create(**kwargs).choices[0]
    with client.chat.completions.stream(**kwargs) as events:
        return events.get_final_completion().choices[0]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_json_mode_is_forwarded_to_kimi(openai_client, fake_provider, stream):
    choice = _answer(openai_client, stream, model="auto", messages=ASK, response_format={"type": "json_object"})
    assert isinstance(json.loads(choice.message.content), dict) and choice.finish_reason == "stop"
    [sent] = fake_provider.requests()
    assert sent["model"] == "kimi-k2.5" and sent["params"]["response_format"] == {"type": "json_object"}


def test_json_schema_on_auto_skips_kimi_for_an_exact_answer(openai_client, fake_provider):
    """Kimi documents JSON mode but no json_schema: the Auto request goes to Claude Haiku, where it is exact."""
    raw = openai_client.chat.completions.with_raw_response.create(model="auto", messages=ASK,
                                                                  response_format=FORMAT)
    assert raw.headers["x-kiwiclaw-model"] == "claude-haiku-4-5"
    jsonschema.validate(json.loads(raw.parse().choices[0].message.content), SCHEMA)
    assert fake_provider.models_called() == ["claude-haiku-4-5"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_json_schema_on_claude_is_a_forced_tool_answered_as_text(openai_client, fake_provider, stream):
    choice = _answer(openai_client, stream, model="max", messages=ASK, response_format=FORMAT)
    answer = json.loads(choice.message.content)
    jsonschema.validate(answer, SCHEMA)
    assert (choice.finish_reason, choice.message.tool_calls) == ("stop", None)
    [sent] = fake_provider.requests()
    assert sent["model"] == "claude-opus-4-6"
    assert sent["params"]["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert [t["input_schema"] for t in sent["params"]["tools"]] == [SCHEMA]
    [row] = usage_rows(1)
    assert row.output_tokens > 0 and row.cost > 0


def test_a_streamed_json_answer_is_the_non_streamed_one(openai_client, fake_provider):
    whole = _answer(openai_client, False, model="max", messages=ASK, response_format=FORMAT)
    streamed = _answer(openai_client, True, model="max", messages=ASK, response_format=FORMAT)
    assert streamed.message.content == whole.message.content


def test_json_object_mode_answers_an_object_from_both_providers(openai_client, fake_provider):
    for model in ("auto", "max"):
        choice = _answer(openai_client, False, model=model, messages=ASK, response_format={"type": "json_object"})
        assert isinstance(json.loads(choice.message.content), dict)


class Capital(BaseModel):
    city: str
    population: int


def test_the_sdks_parse_helper_gets_a_valid_object_from_claude(openai_client, fake_provider):
    """client.chat.completions.parse sends a strict json_schema made from a pydantic model and parses the answer."""
    completion = openai_client.chat.completions.parse(model="max", messages=ASK, response_format=Capital)
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Capital) and parsed.city == "kiwi"


@pytest.mark.parametrize("model", ["max", "auto"])
def test_anthropic_structured_outputs_through_the_sdks_parse_helper(anthropic_client, fake_provider, model):
    """messages.parse sends output_config.format (a json_schema): answered as JSON text by either provider."""
    message = anthropic_client.messages.parse(model=model, max_tokens=100, messages=ASK, output_format=Capital)
    assert isinstance(message.parsed_output, Capital)
    [sent] = fake_provider.requests()
    assert sent["model"] == {"max": "claude-opus-4-6", "auto": "claude-haiku-4-5"}[model]
    assert sent["params"]["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_non_json_answer_to_a_json_request_is_not_passed_off_as_one(openai_client, fake_provider, stream):
    """The provider ignored JSON mode: the client is told (a 502, or an error event ending the stream), and the
    tokens are billed like any answer."""
    import openai

    fake_provider.scenario("kimi-k2.5", text="Sorry, no JSON today.")
    with pytest.raises(openai.APIError, match="not valid JSON"):
        _answer(openai_client, stream, model="auto", messages=ASK, response_format={"type": "json_object"})
    [row] = usage_rows(1)
    assert row.output_tokens == 4 and row.cost > 0


def test_an_answer_off_the_schema_is_not_passed_off_either(openai_client, fake_provider):
    import openai

    fake_provider.scenario("claude-opus-4-6", tool_calls=[{"name": JSON_TOOL, "arguments": {"city": "Wellington"}}])
    with pytest.raises(openai.APIError, match="does not match the requested schema"):
        _answer(openai_client, False, model="max", messages=ASK, response_format=FORMAT)
