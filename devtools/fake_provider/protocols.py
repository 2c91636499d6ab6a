"""The two wire dialects of the fake provider (devtools/fake_provider/app.py): Anthropic's Messages API and
OpenAI-compatible chat completions — request checks, usage, error bodies, whole answers and streamed events,
with the scenario's mid-stream faults (`error_after`, `hang_after`, `drop_after`, `malformed_after`) injected
the same way in both."""

from __future__ import annotations

import json
import time

from .features import fragments


def _sse(data, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()


class _DeltaTemplate:
    """The bytes of one delta event, encoded once per stream around a marker: per token only the token itself is
    JSON-encoded. Byte for byte what `_sse(json)` gives, at a fraction of the cost (a benchmark has the fake
    send ten thousand deltas a second)."""

    MARK = "\x00token\x00"

    def __init__(self, data: dict, event: str | None = None):
        self.head, self.tail = _sse(data, event).split(json.dumps(self.MARK).encode())

    def __call__(self, token: str) -> bytes:
        return self.head + json.dumps(token).encode() + self.tail


def _deltas(tokens: list[str], scenario: dict, delta, error, malformed: bytes):
    """The deltas of a streamed answer as ("delta", bytes), with the scenario's mid-stream fault in their place: an
    error event (`error()`), a hang, an early end, or a chunk that is not JSON. Returns True when the answer may
    finish normally."""
    for i, token in enumerate(tokens):
        if scenario.get("error_after") == i:
            yield "meta", error()
            return False
        if scenario.get("hang_after") == i:
            yield "hang", b""
            return False
        if scenario.get("drop_after") == i:
            return False
        if scenario.get("malformed_after") == i:
            yield "meta", malformed
            return False
        yield "delta", delta(token)
    return True


class Anthropic:
    name = "anthropic"
    id_prefix = "msg_fake"
    call_prefix = "toolu_fake"
    tool_reason = "tool_use"
    stop_reason = "end_turn"
    length_reason = "max_tokens"
    stop_sequence_reason = "stop_sequence"

    @staticmethod
    def stop_sequences(payload):
        stops = payload.get("stop_sequences")
        return [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []

    @staticmethod
    def check(headers, payload):
        if not headers.get("x-api-key"):
            return 401, "authentication_error", "x-api-key header is required"
        if headers.get("anthropic-version") != "2023-06-01":
            return 400, "invalid_request_error", "anthropic-version header is required"
        if not isinstance(payload.get("max_tokens"), int):
            return 400, "invalid_request_error", "max_tokens: Field required"
        if not payload.get("messages"):
            return 400, "invalid_request_error", "messages: at least one message is required"
        if any(m.get("role") == "system" for m in payload["messages"]):
            return 400, "invalid_request_error", "messages: Unexpected role \"system\"."
        return None

    @staticmethod
    def prompt(payload):
        system = payload.get("system")
        if isinstance(system, list):
            system = " ".join(b.get("text", "") for b in system)
        return system, payload.get("messages", [])

    @staticmethod
    def default_error_type(status):
        return {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                529: "overloaded_error"}.get(status, "api_error")

    @staticmethod
    def error_body(error_type, message):
        return {"type": "error", "error": {"type": error_type, "message": message}}

    @staticmethod
    def _usage(usage, output):
        return {"input_tokens": usage["input"], "cache_creation_input_tokens": usage["cache_write"],
                "cache_read_input_tokens": usage["cache_read"], "output_tokens": output}

    @classmethod
    def complete_body(cls, msg_id, model, text, finish, usage, matched=None, calls=()):
        content = [{"type": "text", "text": text}] if text or not calls else []
        content += [{"type": "tool_use", "id": call_id, "name": name, "input": json.loads(args)}
                    for call_id, name, args in calls]
        return {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": finish, "stop_sequence": matched,
                "usage": cls._usage(usage, usage["output"])}

    @staticmethod
    def _tool_events(calls, first_block: int) -> list[bytes]:
        """A tool call's events (https://docs.anthropic.com/en/docs/build-with-claude/streaming): its block's
        start with an empty input, input_json_delta fragments, its stop."""
        out = []
        for i, (call_id, name, args) in enumerate(calls, start=first_block):
            out.append(_sse({"type": "content_block_start", "index": i, "content_block": {
                "type": "tool_use", "id": call_id, "name": name, "input": {}}}, "content_block_start"))
            out += [_sse({"type": "content_block_delta", "index": i,
                          "delta": {"type": "input_json_delta", "partial_json": piece}}, "content_block_delta")
                    for piece in fragments(args) if args != "{}"]
            out.append(_sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
        return out

    @classmethod
    def stream_chunks(cls, msg_id, model, tokens, finish, usage, scenario, payload, matched=None, calls=()):
        start = {"id": msg_id, "type": "message", "role": "assistant", "content": [], "model": model,
                 "stop_reason": None, "stop_sequence": None, "usage": cls._usage(usage, 1)}
        yield "meta", _sse({"type": "message_start", "message": start}, "message_start")
        text_block = bool(tokens) or not calls
        if text_block:
            yield "meta", _sse({"type": "content_block_start", "index": 0,
                                "content_block": {"type": "text", "text": ""}}, "content_block_start")
        yield "meta", _sse({"type": "ping"}, "ping")
        text_delta = _DeltaTemplate({"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": _DeltaTemplate.MARK}},
                                    "content_block_delta")
        delta = lambda item: item if isinstance(item, bytes) else text_delta(item)  # noqa: E731
        error = lambda: _sse(cls.error_body(scenario.get("error_type") or "overloaded_error",  # noqa: E731
                                            scenario.get("error_message") or "Overloaded"), "error")
        malformed = b"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"delta\n\n"
        items = list(tokens)
        if calls:
            if text_block:
                items.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
            items += cls._tool_events(calls, int(text_block))
        if not (yield from _deltas(items, scenario, delta, error, malformed)):
            return
        if not calls:
            yield "meta", _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield "meta", _sse({"type": "message_delta", "delta": {"stop_reason": finish, "stop_sequence": matched},
                            "usage": {"output_tokens": usage["output"]}}, "message_delta")
        yield "meta", _sse({"type": "message_stop"}, "message_stop")


class OpenAI:
    name = "openai"
    id_prefix = "chatcmpl-fake"
    call_prefix = "call_fake"
    tool_reason = "tool_calls"
    stop_reason = "stop"
    length_reason = "length"
    stop_sequence_reason = "stop"

    @staticmethod
    def stop_sequences(payload):
        stops = payload.get("stop")
        if isinstance(stops, str):
            return [stops]
        return [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []

    @staticmethod
    def check(headers, payload):
        if not headers.get("authorization", "").startswith("Bearer ") or len(headers["authorization"]) <= 7:
            return 401, "invalid_authentication_error", "Invalid Authentication"
        if not payload.get("messages"):
            return 400, "invalid_request_error", "messages must not be empty"
        return None

    @staticmethod
    def prompt(payload):
        messages = payload.get("messages", [])
        system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system") or None
        return system, [m for m in messages if m.get("role") != "system"]

    @staticmethod
    def default_error_type(status):
        return {400: "invalid_request_error", 401: "invalid_authentication_error", 429: "rate_limit_reached_error",
                503: "engine_overloaded_error"}.get(status, "server_error")

    @staticmethod
    def error_body(error_type, message):
        return {"error": {"type": error_type, "message": message}}

    @staticmethod
    def _usage(usage, moonshot=False):
        body = {"prompt_tokens": usage["input"] + usage["cache_read"], "completion_tokens": usage["output"],
                "total_tokens": usage["input"] + usage["cache_read"] + usage["output"]}
        if usage["cache_read"]:
            if moonshot:
                body["cached_tokens"] = usage["cache_read"]
            else:
                body["prompt_tokens_details"] = {"cached_tokens": usage["cache_read"]}
        return body

    @classmethod
    def complete_body(cls, msg_id, model, text, finish, usage, matched=None, calls=()):
        message = {"role": "assistant", "content": text}
        if calls:
            message["content"] = text or None
            message["tool_calls"] = [{"id": call_id, "type": "function",
                                      "function": {"name": name, "arguments": args}}
                                     for call_id, name, args in calls]
        return {"id": msg_id, "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": cls._usage(usage)}

    @classmethod
    def stream_chunks(cls, msg_id, model, tokens, finish, usage, scenario, payload, matched=None, calls=()):
        created = int(time.time())

        def chunk(choices, **extra):
            return {"id": msg_id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": choices, **extra}

        def tool_chunk(call):
            return _sse(chunk([{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]))

        yield "meta", _sse(chunk([{"index": 0, "delta": {"role": "assistant", "content": "" if tokens or not calls
                                                         else None}, "finish_reason": None}]))
        text_delta = _DeltaTemplate(chunk([{"index": 0, "delta": {"content": _DeltaTemplate.MARK},
                                            "finish_reason": None}]))
        delta = lambda item: item if isinstance(item, bytes) else text_delta(item)  # noqa: E731
        # Tool calls as https://platform.openai.com/docs/guides/function-calling#streaming shows them: index, id,
        # type and name (arguments "") first, then argument fragments.
        items = list(tokens)
        for i, (call_id, name, args) in enumerate(calls):
            items.append(tool_chunk({"index": i, "id": call_id, "type": "function",
                                     "function": {"name": name, "arguments": ""}}))
            items += [tool_chunk({"index": i, "function": {"arguments": piece}}) for piece in fragments(args)]
        tokens = items
        error = lambda: _sse(cls.error_body(scenario.get("error_type") or "server_error",  # noqa: E731
                                            scenario.get("error_message") or "Injected error"))
        malformed = b"data: {\"id\": \"chatcmpl-broken\", \"choices\": [{\n\n"
        if not (yield from _deltas(tokens, scenario, delta, error, malformed)):
            return
        include_usage = (payload.get("stream_options") or {}).get("include_usage")
        if scenario.get("usage_in_choice"):
            yield "meta", _sse(chunk([{"index": 0, "delta": {}, "finish_reason": finish,
                                       "usage": cls._usage(usage, moonshot=True)}]))
        else:
            yield "meta", _sse(chunk([{"index": 0, "delta": {}, "finish_reason": finish}]))
            if include_usage:
                yield "meta", _sse(chunk([], usage=cls._usage(usage)))
        yield "meta", _sse("[DONE]")
