"""A fake LLM provider: a tiny raw ASGI app speaking the Anthropic Messages API and OpenAI-compatible chat
completions, with deterministic answers, exact usage, and failure injection per model.

It deliberately does not import Django (or anything of routing): it is a stand-in for the internet, and the
routing core must not know it is fake. Behaviour per upstream model id is set with
`POST /_control/scenario {"model": "<id>", ...options}`; `POST /_control/reset` forgets all scenarios and the
request log; `GET /_control/requests` returns the request log (model, protocol, stream, status, and `params`:
every request field but the model, messages and system prompt, as sent).

Stop sequences are honoured as the real APIs do: the answer ends before the first occurrence of any of the
request's `stop` (OpenAI) / `stop_sequences` (Anthropic) strings, which is not part of the text. Anthropic reports
`stop_reason` "stop_sequence" with `stop_sequence` set to the matched string; OpenAI only `finish_reason` "stop".

Scenario options (all optional):
  status, error_type, error_message, retry_after  an HTTP error answer (with the protocol's error body)
  fail_times       apply `status` only to the first N requests of that model, then answer normally
  ttft_ms          wait before the first byte of the answer
  delay_ms         wait between deltas
  tokens           number of output tokens (= deltas) of the default answer (default 12); with it set, a prompt
                   asking for code, a table or a list gets the plain echo answer, not the markdown demo (demo.py)
  text             force the answer text (split into tokens at word boundaries)
  error_after      streaming: send N deltas, then a mid-stream error (error_type, default overloaded/server)
  hang             never answer (until the client goes away)
  hang_after       streaming: send N deltas, then hang
  malformed_after  streaming: send N deltas, then a chunk that is not JSON
  drop_after       streaming: send N deltas, then end the response without finishing the stream
  cache_read_tokens, cache_write_tokens  report prompt caching (cache write is Anthropic only)
  usage_in_choice  OpenAI protocol: put usage inside the last choice (Moonshot's form) instead of a usage chunk
  finish_reason    force the provider's own stop reason (e.g. "content_filter", "max_tokens")
  tool_calls       [{"name": ..., "arguments": {...}}, ...]: the tool calls of an answer to a request with tools
                   (several: parallel calls); without it the forced or first tool is called with arguments made
                   from its schema. After a tool result (and with tool_choice none) the answer is text.
                   With `text` too, the answer has that text before its calls.

Beyond text (features.py): tool calls (OpenAI `tool_calls`, finish_reason "tool_calls"; Anthropic `tool_use`
blocks, stop_reason "tool_use"; streamed as each API does), `response_format` json_object / json_schema (an
object valid for a simple schema, unless `text` is set), images (accepted and counted: the log's `images`), and
Anthropic's cache accounting for `cache_control` breakpoints (the first request with a prefix writes it, later
ones read it; `cache_read_tokens` / `cache_write_tokens` in the scenario override it). The request log keeps
each request's `messages` and `system` as sent, too.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

from . import features
from .demo import demo_answer
from .protocols import Anthropic, OpenAI

DEFAULT_TOKENS = 12
FILLER = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")


def prompt_tokens(*, system: str | None, messages: list[dict]) -> int:
    """The fake's exact input token count: one per whitespace-separated word, plus one per message."""
    count = len((system or "").split())
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):  # Anthropic/OpenAI content blocks
            content = " ".join(b.get("text", "") for b in content if isinstance(b, dict))
        count += len(str(content or "").split()) + 1
    return count


def answer_tokens(*, model: str, messages: list[dict], scenario: dict) -> list[str]:
    """The deterministic answer, as a list of tokens (each one delta)."""
    if scenario.get("text") is not None:
        return re.findall(r"\s*\S+\s*$|\s*\S+", scenario["text"]) or [""]
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    content = last_user.get("content")
    if isinstance(content, list):
        content = " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    demo = None if "tokens" in scenario else demo_answer(model=model, prompt=str(content or ""))
    if demo is not None:
        return re.findall(r"\s*\S+\s*$|\s*\S+", demo)
    words = ["Echo", " from", f" {model}:"] + [f" {w}" for w in str(content or "").split()[:8]]
    n = int(scenario.get("tokens", DEFAULT_TOKENS))
    i = 0
    while len(words) < n:
        words.append(f" {FILLER[i % len(FILLER)]}")
        i += 1
    return words[:n]


def cut_at_stop(tokens: list[str], stops: list[str]) -> tuple[list[str], str | None]:
    """The tokens up to (not including) the earliest stop sequence in their text, and the sequence matched (the
    earliest; of two at the same place, the first listed). Unchanged tokens and None when none occurs."""
    text = "".join(tokens)
    found = [(text.find(s), i, s) for i, s in enumerate(stops) if s and s in text]
    if not found:
        return tokens, None
    cut, _, matched = min(found)
    kept, length = [], 0
    for token in tokens:
        if length + len(token) > cut:
            if cut > length:
                kept.append(token[:cut - length])
            break
        kept.append(token)
        length += len(token)
    return kept, matched


class FakeProvider:
    def __init__(self):
        self.scenarios: dict[str, dict] = {}
        self.counts: dict[str, int] = {}
        self.log: list[dict] = []
        self.seq = 0
        self.cache = features.PromptCache()

    # --- ASGI entry point ---
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if path == "/_control/scenario" and method == "POST":
            options = json.loads(body or b"{}")
            model = options.pop("model")
            self.scenarios[model] = options
            self.counts[model] = 0
            return await _json(send, 200, {"ok": True, "model": model, "scenario": options})
        if path == "/_control/reset" and method == "POST":
            self.scenarios.clear()
            self.counts.clear()
            self.log.clear()
            self.cache.clear()
            return await _json(send, 200, {"ok": True})
        if path == "/_control/requests" and method == "GET":
            return await _json(send, 200, {"requests": self.log})
        if path.endswith("/messages") and method == "POST":
            return await self.handle(Anthropic, headers, body, receive, send)
        if path.endswith("/chat/completions") and method == "POST":
            return await self.handle(OpenAI, headers, body, receive, send)
        return await _json(send, 404, {"error": {"type": "not_found", "message": f"No route {method} {path}"}})

    async def handle(self, proto, headers, body, receive, send):
        try:
            payload = json.loads(body)
        except ValueError:
            return await _json(send, 400, proto.error_body("invalid_request_error", "Body is not JSON."))
        model = str(payload.get("model", ""))
        stream = bool(payload.get("stream"))
        entry = {"model": model, "protocol": proto.name, "stream": stream, "status": 200,
                 "max_tokens": payload.get("max_tokens"), "at": time.time(),
                 "params": {k: v for k, v in payload.items() if k not in ("model", "messages", "system")}}
        self.log.append(entry)
        problem = proto.check(headers, payload)
        if problem:
            entry["status"] = problem[0]
            return await _json(send, problem[0], proto.error_body(problem[1], problem[2]))

        scenario = self.scenarios.get(model, {})
        self.counts[model] = self.counts.get(model, 0) + 1
        if scenario.get("ttft_ms"):
            await asyncio.sleep(scenario["ttft_ms"] / 1000)
        if scenario.get("hang"):
            entry["status"] = "hang"
            return await _wait_disconnect(receive)
        status = scenario.get("status")
        fail_times = scenario.get("fail_times")
        if status and (fail_times is None or self.counts[model] <= fail_times):
            entry["status"] = status
            extra = {}
            if scenario.get("retry_after") is not None:
                extra["retry-after"] = str(scenario["retry_after"])
            error_type = scenario.get("error_type") or proto.default_error_type(status)
            message = scenario.get("error_message") or f"Injected {error_type}"
            return await _json(send, status, proto.error_body(error_type, message), extra)

        system, messages = proto.prompt(payload)
        entry.update(messages=payload.get("messages"), system=payload.get("system"),
                     images=features.count_images(messages))
        calls = features.tool_calls(payload, proto.name, scenario, messages)
        json_text = features.json_answer(payload, scenario) if proto.name == "openai" else None
        if json_text is not None:
            tokens = features.fragments(json_text)
        elif calls and scenario.get("text") is None:
            tokens = []
        else:
            tokens = answer_tokens(model=model, messages=messages, scenario=scenario)
        finish = scenario.get("finish_reason") or (proto.tool_reason if calls else proto.stop_reason)
        max_tokens = payload.get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens < len(tokens):
            tokens, finish = tokens[:max_tokens], proto.length_reason
        tokens, matched = cut_at_stop(tokens, proto.stop_sequences(payload))
        if matched is not None:
            finish = proto.stop_sequence_reason
        if proto.name == "anthropic":
            prompt, read, write = self.cache.usage(model, payload)
        else:
            prompt = prompt_tokens(system=system, messages=messages) + sum(
                len(json.dumps(t).split()) for t in payload.get("tools") or ())
            read = write = 0
        usage = {
            "input": prompt,
            "output": len(tokens) + sum(len(features.fragments(args)) for _, args in calls),
            "cache_read": int(scenario.get("cache_read_tokens", read)),
            "cache_write": int(scenario.get("cache_write_tokens", write)),
        }
        self.seq += 1
        msg_id = f"{proto.id_prefix}{self.seq:06d}"
        calls = [(f"{proto.call_prefix}{self.seq:06d}{i}", name, args) for i, (name, args) in enumerate(calls)]
        if not stream:
            return await _json(send, 200, proto.complete_body(msg_id, model, "".join(tokens), finish, usage, matched,
                                                              calls))

        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        gen = proto.stream_chunks(msg_id, model, tokens, finish, usage, scenario, payload, matched, calls)
        delay = scenario.get("delay_ms", 0) / 1000
        for kind, chunk in gen:
            if kind == "hang":
                entry["status"] = "hang_mid_stream"
                return await _wait_disconnect(receive)
            if kind == "delta" and delay:
                await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _json(send, status: int, body: dict, extra_headers: dict | None = None):
    raw = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    for k, v in (extra_headers or {}).items():
        headers.append((k.encode(), v.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


async def _wait_disconnect(receive):
    # Block (no polling) until the client gives up and closes the connection.
    while (await receive())["type"] != "http.disconnect":
        pass
