"""Every request field of both APIs is either forwarded to the provider (asserted at the fake provider), recorded,
or refused with 400 naming it: nothing is dropped silently (proxy/parsing.py, docs/contracts.md).

The field lists come from the official SDKs' own request types, so a field a new SDK version adds fails
`test_the_matrix_covers_every_sdk_field` until a decision is written down here and in the parser.
"""

import json
import time

import httpx
import pytest
from anthropic.types.message_create_params import MessageCreateParamsBase
from openai.types.chat.completion_create_params import CompletionCreateParamsBase

from billing.models import UsageRecord
from proxy.parsing import ANTHROPIC_KNOWN, OPENAI_KNOWN

pytestmark = pytest.mark.django_db(transaction=True)

# `stream` lives in the SDKs' streaming/non-streaming subclasses; the 2026-10-21 Anthropic types dropped the
# sampling fields, which clients on anthropic-version 2023-06-01 still send. Every field the parser itself names
# (beta ones such as `mcp_servers` included) is in the matrix too.
OPENAI_FIELDS = set(CompletionCreateParamsBase.__annotations__) | {"stream"} | OPENAI_KNOWN
ANTHROPIC_FIELDS = (set(MessageCreateParamsBase.__annotations__) | {"stream", "temperature", "top_p", "top_k"}
                    | ANTHROPIC_KNOWN)

OPENAI_BASE = {"model": "auto", "messages": [{"role": "user", "content": "hello matrix"}]}
ANTHROPIC_BASE = {"model": "max", "max_tokens": 50, "messages": [{"role": "user", "content": "hello matrix"}]}


def _params(upstream):
    return upstream["params"]


FN = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
CLIENT_TOOL = {"name": "lookup", "input_schema": {"type": "object"}}

# field -> (sample request fields, check(answer, upstream request, usage row)) for what is forwarded or recorded
OPENAI_FORWARDED = {
    "model": ({"model": "auto"}, lambda a, u, r: u["model"] == "kimi-k2.5"),
    "messages": ({}, lambda a, u, r: "hello matrix" in a.json()["choices"][0]["message"]["content"]),
    "max_tokens": ({"max_tokens": 7}, lambda a, u, r: u["max_tokens"] == 7),
    "max_completion_tokens": ({"max_completion_tokens": 6}, lambda a, u, r: u["max_tokens"] == 6),
    "temperature": ({"temperature": 0.4}, lambda a, u, r: _params(u)["temperature"] == 0.4),
    "top_p": ({"top_p": 0.5}, lambda a, u, r: _params(u)["top_p"] == 0.5),
    "stop": ({"stop": ["zz", "yy"]}, lambda a, u, r: _params(u)["stop"] == ["zz", "yy"]),
    "seed": ({"seed": 42}, lambda a, u, r: _params(u)["seed"] == 42),
    "stream": ({"stream": True}, lambda a, u, r: u["stream"] is True and a.text.endswith("data: [DONE]\n\n")),
    # Answered by the proxy itself: the final usage chunk (the upstream always streams usage back).
    "stream_options": ({"stream": True, "stream_options": {"include_usage": True}},
                       lambda a, u, r: '"choices":[],"usage":{' in a.text),
    # Recorded on the usage row, not sent on.
    "user": ({"user": "end-user-7"}, lambda a, u, r: r.end_user == "end-user-7" and "user" not in _params(u)),
    "safety_identifier": ({"safety_identifier": "sha-9f"},
                          lambda a, u, r: r.end_user == "sha-9f" and "safety_identifier" not in _params(u)),
    "tools": ({"tools": [FN]}, lambda a, u, r: _params(u)["tools"] == [FN]
              and a.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "lookup"),
    # "none" (Kimi, the Auto model, takes no forced tool_choice: required / named skip it, tests/proxy/test_tools.py).
    "tool_choice": ({"tools": [FN], "tool_choice": "none"},
                    lambda a, u, r: _params(u)["tool_choice"] == "none"
                    and a.json()["choices"][0]["finish_reason"] == "stop"),
    "parallel_tool_calls": ({"tools": [FN], "parallel_tool_calls": False},
                            lambda a, u, r: _params(u)["parallel_tool_calls"] is False),
    "response_format": ({"response_format": {"type": "json_object"}},
                        lambda a, u, r: _params(u)["response_format"] == {"type": "json_object"}
                        and json.loads(a.json()["choices"][0]["message"]["content"]) == {"answer": "kiwi"}),
}
OPENAI_REFUSED = {
    "n": 2, "functions": [{"name": "f"}], "function_call": "auto", "audio": {"voice": "alloy", "format": "mp3"},
    "modalities": ["text", "audio"], "logprobs": True, "top_logprobs": 2, "logit_bias": {"50256": -100},
    "frequency_penalty": 0.5, "presence_penalty": 0.5, "prediction": {"type": "content", "content": "x"},
    "web_search_options": {}, "reasoning_effort": "high", "store": True, "metadata": {"team": "a"},
    "service_tier": "priority", "verbosity": "low", "prompt_cache_key": "k1", "prompt_cache_retention": "24h",
    "prompt_cache_options": {"mode": "x"}, "moderation": {"mode": "x"},
}

ANTHROPIC_FORWARDED = {
    "model": ({"model": "max"}, lambda a, u, r: u["model"] == "claude-opus-4-6"),
    "messages": ({}, lambda a, u, r: "hello matrix" in a.json()["content"][0]["text"]),
    "system": ({"system": "one two three"}, lambda a, u, r: a.json()["usage"]["input_tokens"] == 3 + 3),
    "max_tokens": ({"max_tokens": 9}, lambda a, u, r: u["max_tokens"] == 9),
    "temperature": ({"temperature": 0.3}, lambda a, u, r: _params(u)["temperature"] == 0.3),
    "top_p": ({"top_p": 0.6}, lambda a, u, r: _params(u)["top_p"] == 0.6),
    "stop_sequences": ({"stop_sequences": ["zz"]}, lambda a, u, r: _params(u)["stop_sequences"] == ["zz"]),
    "stream": ({"stream": True}, lambda a, u, r: u["stream"] is True and "event: message_stop" in a.text),
    "metadata": ({"metadata": {"user_id": "end-user-8"}},
                 lambda a, u, r: r.end_user == "end-user-8" and "metadata" not in _params(u)),
    # Honoured as asked: KiwiClaw never uses priority capacity, so every request is standard_only.
    "service_tier": ({"service_tier": "standard_only"}, lambda a, u, r: "service_tier" not in _params(u)),
    "tools": ({"tools": [CLIENT_TOOL]}, lambda a, u, r: _params(u)["tools"] == [CLIENT_TOOL]
              and a.json()["content"][0]["name"] == "lookup"),
    "tool_choice": ({"tools": [CLIENT_TOOL], "tool_choice": {"type": "any"}},
                    lambda a, u, r: _params(u)["tool_choice"] == {"type": "any"}
                    and a.json()["stop_reason"] == "tool_use"),
    # Its format (structured output): on Claude a forced tool answered as text; its effort is refused.
    "output_config": ({"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
                      lambda a, u, r: _params(u)["tool_choice"]["type"] == "tool"
                      and json.loads(a.json()["content"][0]["text"]) == {}),
    # Top level: a breakpoint on the last block, as Anthropic applies it; the fake writes the prefix to its cache.
    "cache_control": ({"cache_control": {"type": "ephemeral"}},
                      lambda a, u, r: u["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
                      and a.json()["usage"]["cache_creation_input_tokens"] == r.cache_write_tokens == 3),
}
ANTHROPIC_REFUSED = {
    "top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 1024}, "container": "c1",
    "mcp_servers": [{"type": "url", "url": "https://example.com", "name": "m"}],
    "inference_geo": "us",
    "speed": "fast", "diagnostics": {}, "user_profile_id": "p1", "workspace_id": "w1",
}


def test_the_matrix_covers_every_sdk_field():
    assert set(OPENAI_FORWARDED) | set(OPENAI_REFUSED) == OPENAI_FIELDS
    assert set(ANTHROPIC_FORWARDED) | set(ANTHROPIC_REFUSED) == ANTHROPIC_FIELDS
    assert not set(OPENAI_FORWARDED) & set(OPENAI_REFUSED)
    assert not set(ANTHROPIC_FORWARDED) & set(ANTHROPIC_REFUSED)


def _row(request_id: str, timeout: float = 8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = UsageRecord.objects.filter(key=f"api:{request_id}").first()
        if row is not None:
            return row
        time.sleep(0.02)
    raise AssertionError(f"no usage row for {request_id}")


def _run_matrix(server, fake_provider, key, *, path, headers, base, forwarded, refused, param_of):
    problems = []
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {key}", **headers},
                      timeout=20) as http:
        for field, value in refused.items():
            fake_provider.reset()
            answer = http.post(path, json={**base, field: value})
            if answer.status_code != 400 or param_of(answer) != field or fake_provider.requests():
                problems.append((field, "not refused by name", answer.status_code, answer.text[:200]))
        # Refusals are free: not one usage row.
        assert UsageRecord.objects.count() == 0
        for field, (fields, check) in forwarded.items():
            fake_provider.reset()
            answer = http.post(path, json={**base, **fields})
            if answer.status_code != 200:
                problems.append((field, "refused", answer.status_code, answer.text[:200]))
                continue
            [upstream] = fake_provider.requests()
            if not check(answer, upstream, _row(answer.headers["x-request-id"])):
                problems.append((field, "not forwarded", upstream))
    assert problems == []


def test_every_openai_field_is_forwarded_recorded_or_refused_by_name(server, fake_provider, alice_key):
    _run_matrix(server, fake_provider, alice_key, path="/v1/chat/completions", headers={}, base=OPENAI_BASE,
                forwarded=OPENAI_FORWARDED, refused=OPENAI_REFUSED,
                param_of=lambda answer: answer.json()["error"]["param"])


def _named_field(answer) -> str | None:
    """Anthropic's error body has no `param`: the message names the field in backquotes."""
    message = answer.json()["error"]["message"]
    return message.split("`")[1] if message.count("`") >= 2 else (message.split(": ")[-1] or None)


def test_every_anthropic_field_is_forwarded_recorded_or_refused_by_name(server, fake_provider, alice_key):
    _run_matrix(server, fake_provider, alice_key, path="/v1/messages", headers={"anthropic-version": "2023-06-01"},
                base=ANTHROPIC_BASE, forwarded=ANTHROPIC_FORWARDED, refused=ANTHROPIC_REFUSED,
                param_of=_named_field)


@pytest.mark.parametrize("name", ["temperature", "top_p"])
def test_anthropic_version_2026_10_21_refuses_the_sampling_parameters_it_removed(server, fake_provider, alice_key,
                                                                                  name):
    answer = httpx.post(f"{server.url}/v1/messages", json={**ANTHROPIC_BASE, name: 1.0},
                        headers={"x-api-key": alice_key, "anthropic-version": "2026-10-21"})
    assert answer.status_code == 400 and _named_field(answer) == name
    assert fake_provider.requests() == [] and UsageRecord.objects.count() == 0
