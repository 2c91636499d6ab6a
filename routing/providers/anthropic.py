"""Anthropic Messages API adapter (https://docs.anthropic.com/en/api/messages). Pure: no I/O.

Temperature: Anthropic accepts 0–1, OpenAI 0–2 (Moonshot 0–1). A request's temperature is clamped to the answering
provider's range, not rescaled: 1.0 is the model's own, unscaled distribution in every one of these APIs, so
values inside the shared range mean the same everywhere, and a value above 1 (OpenAI only) becomes Anthropic's
most random setting instead of failing a request another endpoint of the chain would take. `seed` has no
Anthropic counterpart and is not sent (it is best-effort by OpenAI's own definition).

Stop sequences: Anthropic says which one ended the answer (`stop_reason` "stop_sequence" with `stop_sequence`);
it travels as Finish.stop_sequence / ParsedResponse.stop_sequence.

Usage: Anthropic reports `input_tokens` already excluding cache reads (`cache_read_input_tokens`) and cache
writes (`cache_creation_input_tokens`), which is exactly our rule. In a stream, `message_start` carries the
input usage and `message_delta` the cumulative output tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import orjson

from ..errors import (
    KIND_AUTH,
    KIND_BAD_REQUEST,
    KIND_CONTEXT_LENGTH,
    KIND_OVERLOADED,
    KIND_RATE_LIMITED,
    KIND_SERVER,
    ProviderError,
)
from ..types import (
    FINISH_CONTENT_FILTER,
    FINISH_LENGTH,
    FINISH_STOP,
    ChatRequest,
    Finish,
    TextDelta,
    Usage,
    UsageUpdate,
)
from . import ParsedResponse, StreamState, UpstreamRequest, parse_retry_after

API_VERSION = "2023-06-01"
MAX_TEMPERATURE = 1.0

STOP_REASONS = {
    "end_turn": FINISH_STOP,
    "stop_sequence": FINISH_STOP,
    "tool_use": FINISH_STOP,
    "pause_turn": FINISH_STOP,
    "max_tokens": FINISH_LENGTH,
    "model_context_window_exceeded": FINISH_LENGTH,
    "refusal": FINISH_CONTENT_FILTER,
}

ERROR_TYPES = {
    "rate_limit_error": KIND_RATE_LIMITED,
    "overloaded_error": KIND_OVERLOADED,
    "api_error": KIND_SERVER,
    "timeout_error": KIND_SERVER,
    "authentication_error": KIND_AUTH,
    "permission_error": KIND_AUTH,
    "billing_error": KIND_AUTH,
    "invalid_request_error": KIND_BAD_REQUEST,
    "request_too_large": KIND_CONTEXT_LENGTH,
}

_CONTEXT_HINTS = ("prompt is too long", "context window", "context length", "too many tokens",
                  "exceeds the maximum", "input length")


def build_request(*, base_url: str, api_key: str, model: str, request: ChatRequest, stream: bool,
                  max_tokens: int) -> UpstreamRequest:
    body: dict = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.system:
        body["system"] = request.system
    if request.temperature is not None:
        body["temperature"] = min(request.temperature, MAX_TEMPERATURE)  # clamped: see the module docstring
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if stream:
        body["stream"] = True
    headers = {"x-api-key": api_key, "anthropic-version": API_VERSION, "content-type": "application/json"}
    return UpstreamRequest(url=f"{base_url.rstrip('/')}/v1/messages", headers=headers, body=body)


def _usage(raw: Mapping) -> Usage:
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0),
        output_tokens=int(raw.get("output_tokens") or 0),
        cache_read_tokens=int(raw.get("cache_read_input_tokens") or 0),
        cache_write_tokens=int(raw.get("cache_creation_input_tokens") or 0),
    )


def parse_response(body: Mapping) -> ParsedResponse:
    if body.get("type") == "error":
        raise classify_error(200, {}, json.dumps(body).encode())
    try:
        text = "".join(b.get("text", "") for b in body["content"] if b.get("type") == "text")
        stop = body.get("stop_reason") or "end_turn"
        return ParsedResponse(text=text, finish_reason=STOP_REASONS.get(stop, FINISH_STOP),
                              usage=_usage(body.get("usage") or {}), stop_sequence=_stop_sequence(stop, body))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ProviderError(KIND_SERVER, f"Unreadable Anthropic response: {exc!r}") from None


def _stop_sequence(stop_reason: str, where: Mapping) -> str | None:
    sequence = where.get("stop_sequence")
    return sequence if stop_reason == "stop_sequence" and isinstance(sequence, str) else None


def new_stream_state() -> StreamState:
    return StreamState()


def parse_stream_event(state: StreamState, event: str | None, data: str) -> list:
    """One SSE event in, normalized events out. Raises ProviderError for an `error` event or bad JSON."""
    try:
        payload = orjson.loads(data)
    except ValueError:
        raise ProviderError(KIND_SERVER, "The provider sent a malformed stream chunk.") from None
    kind = payload.get("type") if isinstance(payload, dict) else None
    kind = kind or event
    if kind == "content_block_delta":
        delta = payload.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [TextDelta(delta["text"])]
        return []  # thinking, tool input, citations: not part of a text answer
    if kind == "message_start":
        usage = (payload.get("message") or {}).get("usage") or {}
        state.input_tokens = int(usage.get("input_tokens") or 0)
        state.cache_read_tokens = int(usage.get("cache_read_input_tokens") or 0)
        state.cache_write_tokens = int(usage.get("cache_creation_input_tokens") or 0)
        # message_start's output_tokens is a placeholder (1); the real count comes in message_delta.
        return [UsageUpdate(Usage(input_tokens=state.input_tokens, cache_read_tokens=state.cache_read_tokens,
                                  cache_write_tokens=state.cache_write_tokens))]
    if kind == "message_delta":
        usage = payload.get("usage") or {}
        events: list = []
        if "output_tokens" in usage:
            state.output_tokens = int(usage["output_tokens"])  # cumulative, so assign
            # Newer API versions may also repeat the (cumulative) input counts here.
            if usage.get("input_tokens") is not None:
                state.input_tokens = int(usage["input_tokens"])
            events.append(UsageUpdate(state.usage()))
        delta = payload.get("delta") or {}
        stop = delta.get("stop_reason")
        if stop:
            state.finish_reason = STOP_REASONS.get(stop, FINISH_STOP)
            state.stop_sequence = _stop_sequence(stop, delta)
        return events
    if kind == "message_stop":
        state.finished = True
        return [Finish(state.finish_reason or FINISH_STOP, state.stop_sequence)]
    if kind == "error":
        raise classify_error(200, {}, data.encode())
    return []  # ping, content_block_start/stop, and event types added after this was written


def stream_usage(state: StreamState) -> Usage | None:
    return state.usage()


def classify_error(status: int, headers: Mapping, body: bytes) -> ProviderError:
    """An HTTP error answer (or a mid-stream error event, status 200) as a ProviderError with its kind."""
    error_type, message = "", ""
    try:
        payload = json.loads(body)
        error = payload.get("error") or {}
        error_type, message = error.get("type") or "", error.get("message") or ""
    except (ValueError, AttributeError):
        message = body[:200].decode(errors="replace")
    kind = ERROR_TYPES.get(error_type)
    if kind is None:
        if status == 429:
            kind = KIND_RATE_LIMITED
        elif status == 529:
            kind = KIND_OVERLOADED
        elif status in (401, 403):
            kind = KIND_AUTH
        elif status == 413:
            kind = KIND_CONTEXT_LENGTH
        elif 400 <= status < 500 and status != 408:
            kind = KIND_BAD_REQUEST
        else:
            kind = KIND_SERVER
    if kind == KIND_BAD_REQUEST and any(hint in message.lower() for hint in _CONTEXT_HINTS):
        kind = KIND_CONTEXT_LENGTH
    retryable = None
    if status == 404:  # a model id the provider does not know: this endpoint is misconfigured, not the request
        kind, retryable = KIND_SERVER, False
    return ProviderError(kind, message or f"Anthropic returned HTTP {status}", retryable=retryable,
                         status=status or None, retry_after=parse_retry_after(_header(headers, "retry-after")))


def _header(headers: Mapping, name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value
