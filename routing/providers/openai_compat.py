"""OpenAI-compatible chat completions adapter (Moonshot Kimi and any other OpenAI-compatible base URL).
Pure: no I/O. https://platform.openai.com/docs/api-reference/chat, https://platform.moonshot.ai/docs/api/chat

Temperature: OpenAI accepts 0–2, Moonshot 0–1 (https://platform.moonshot.ai/docs/api/chat), Anthropic 0–1. The
request's temperature is clamped to the answering provider's range (1.0 for upstream models named kimi-* or
moonshot-*, 2.0 otherwise), not rescaled: 1.0 is the model's own, unscaled distribution in all three APIs, so a
value means the same wherever it is accepted. `seed` is forwarded (OpenAI documents it as best-effort
determinism; a compatible server without it ignores it, which that best-effort contract allows).

Stop sequences: the OpenAI API reports `finish_reason` "stop" for a natural end and a stop sequence alike and
does not say which sequence matched, so Finish.stop_sequence stays None here.

Tools (https://platform.openai.com/docs/guides/function-calling): ToolSpecs become `tools` of type function,
ToolUseBlocks an assistant message's `tool_calls` (arguments as the JSON text), ToolResultBlocks `tool` role
messages (one per result, in order, before the rest of that user turn). The OpenAI API has no error flag on a tool
result: an `is_error` result's text is sent prefixed "Error: ". tool_choice and parallel_tool_calls are
forwarded as they are. In a stream `delta.tool_calls[i]` carries `index`, then `id` and `function.name` on its
first fragment and `function.arguments` fragments; finish_reason `tool_calls` is FINISH_TOOL_CALLS.
`response_format` (json_object / json_schema) is forwarded as it is. `cache_control` is not sent: these providers
cache prompt prefixes automatically. Images go as `image_url` parts (a data URL for base64 data); Moonshot's Kimi
takes base64 data only (ACCEPTS_NO_IMAGE_URLS), so a URL image skips its endpoints, and no forced tool_choice
(NO_FORCED_TOOL_CHOICE), so a request forcing a tool call skips them too, and JSON mode but no json_schema
(NO_JSON_SCHEMA), so a json_schema request skips them as well.

Usage: `prompt_tokens` includes cached tokens, so input_tokens = prompt_tokens - cached, where cached is
`prompt_tokens_details.cached_tokens` (OpenAI) or `cached_tokens` (Moonshot). There is no cache-write count.
Streaming usage arrives in a final chunk with empty `choices` (stream_options.include_usage) or, on Moonshot,
inside the last choice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import orjson

from ..errors import (
    KIND_AUTH,
    KIND_BAD_REQUEST,
    KIND_CONTENT_FILTER,
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
    FINISH_TOOL_CALLS,
    ChatRequest,
    Finish,
    ImageBlock,
    TextBlock,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
    UsageUpdate,
)
from . import ParsedResponse, StreamState, ToolStreams, UpstreamRequest, parse_retry_after

FINISH_REASONS = {
    "stop": FINISH_STOP,
    "length": FINISH_LENGTH,
    "content_filter": FINISH_CONTENT_FILTER,
    "tool_calls": FINISH_TOOL_CALLS,
    "function_call": FINISH_TOOL_CALLS,
}

# Upstream model name prefixes that take images only as base64 data (or an uploaded file id), never a URL to fetch
# (https://platform.kimi.ai/docs/api/chat, image_url.url).
ACCEPTS_NO_IMAGE_URLS = ("kimi", "moonshot")
# ... and that refuse a forced tool_choice ("required" or a named function) with a 400 while thinking is on, which
# is Kimi K2.5's default ("tool_choice ... is incompatible with thinking enabled", as integrators of Moonshot's API
# report): such a request skips them for a model that honours it.
NO_FORCED_TOOL_CHOICE = ("kimi", "moonshot")
# ... and that document JSON mode (response_format json_object) but not json_schema
# (https://platform.moonshot.ai/docs/guide/use-json-mode-feature-of-kimi-api): a json_schema request skips them.
NO_JSON_SCHEMA = ("kimi", "moonshot")

ERROR_TYPES = {
    "engine_overloaded_error": KIND_OVERLOADED,
    "rate_limit_reached_error": KIND_RATE_LIMITED,
    "rate_limit_exceeded": KIND_RATE_LIMITED,
    "requests": KIND_RATE_LIMITED,
    "tokens": KIND_RATE_LIMITED,
    "invalid_authentication_error": KIND_AUTH,
    "incorrect_api_key_error": KIND_AUTH,
    "authentication_error": KIND_AUTH,
    "permission_denied_error": KIND_AUTH,
    "exceeded_current_quota_error": KIND_AUTH,
    "insufficient_quota": KIND_AUTH,
    "invalid_request_error": KIND_BAD_REQUEST,
    "context_length_exceeded": KIND_CONTEXT_LENGTH,
    "content_filter": KIND_CONTENT_FILTER,
    "server_error": KIND_SERVER,
}

_CONTEXT_HINTS = ("context length", "context_length", "maximum context", "context window", "too long",
                  "exceeded model token limit", "token limit")
_FILTER_HINTS = ("high risk", "content filter", "content_filter")


# Upstream model name prefixes whose provider caps temperature below OpenAI's 2.0.
TEMPERATURE_CAPS = (("kimi", 1.0), ("moonshot", 1.0))


def max_temperature(model: str) -> float:
    return next((cap for prefix, cap in TEMPERATURE_CAPS if model.startswith(prefix)), 2.0)


def accepts_image_urls(model: str) -> bool:
    return not model.startswith(ACCEPTS_NO_IMAGE_URLS)


def accepts_forced_tool_choice(model: str) -> bool:
    return not model.startswith(NO_FORCED_TOOL_CHOICE)


def accepts_json_schema(model: str) -> bool:
    return not model.startswith(NO_JSON_SCHEMA)


def _text(blocks) -> str:
    return "".join(b.text for b in blocks if type(b) is TextBlock)


def _part(block) -> dict:
    if type(block) is TextBlock:
        return {"type": "text", "text": block.text}
    url = block.url if block.data is None else f"data:{block.media_type};base64,{block.data}"
    image = {"url": url}
    if block.detail is not None:
        image["detail"] = block.detail
    return {"type": "image_url", "image_url": image}


def _block_messages(role: str, blocks: tuple) -> list[dict]:
    """One normalized message with blocks as OpenAI messages: an assistant message with its tool_calls; a user
    turn's tool results as `tool` messages first, then the rest of the turn as one user message."""
    if role == "assistant":
        message: dict = {"role": "assistant", "content": _text(blocks) or None}
        calls = [{"id": b.id, "type": "function", "function": {"name": b.name, "arguments": b.arguments}}
                 for b in blocks if type(b) is ToolUseBlock]
        if calls:
            message["tool_calls"] = calls
        return [message]
    out: list[dict] = []
    rest = []
    for block in blocks:
        if type(block) is ToolResultBlock:
            text = block.content if isinstance(block.content, str) else _text(block.content)
            out.append({"role": "tool", "tool_call_id": block.tool_use_id,
                        "content": f"Error: {text}" if block.is_error else text})
        else:
            rest.append(block)
    if rest:
        if any(type(b) is ImageBlock for b in rest):
            out.append({"role": role, "content": [_part(b) for b in rest]})
        else:
            out.append({"role": role, "content": _text(rest)})
    return out


def _tools(request: ChatRequest, body: dict) -> None:
    if request.tools:
        tools = []
        for spec in request.tools:
            function = {"name": spec.name, "parameters": spec.parameters}
            if spec.description is not None:
                function["description"] = spec.description
            if spec.strict is not None:
                function["strict"] = spec.strict
            tools.append({"type": "function", "function": function})
        body["tools"] = tools
        choice = request.tool_choice
        if choice is not None:
            body["tool_choice"] = choice.mode if choice.mode != "tool" else \
                {"type": "function", "function": {"name": choice.name}}
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    fmt = request.response_format
    if fmt is not None:
        if fmt.kind == "json_schema":
            schema: dict = {"name": fmt.name or "answer", "schema": fmt.schema}
            if fmt.description is not None:
                schema["description"] = fmt.description
            if fmt.strict is not None:
                schema["strict"] = fmt.strict
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        else:
            body["response_format"] = {"type": "json_object"}


def build_request(*, base_url: str, api_key: str, model: str, request: ChatRequest, stream: bool,
                  max_tokens: int) -> UpstreamRequest:
    system = _text(request.system_blocks) if request.system_blocks else request.system
    messages = [{"role": "system", "content": system}] if system else []
    for m in request.messages:
        if m.blocks is None:
            messages.append({"role": m.role, "content": m.content})
        else:
            messages += _block_messages(m.role, m.blocks)
    body: dict = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if request.tools or request.response_format is not None:
        _tools(request, body)
    if request.temperature is not None:
        body["temperature"] = min(request.temperature, max_temperature(model))  # clamped: see the docstring
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
    return UpstreamRequest(url=f"{base_url.rstrip('/')}/chat/completions", headers=headers, body=body)


def _usage(raw: Mapping) -> Usage:
    details = raw.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or raw.get("cached_tokens") or 0)
    prompt = int(raw.get("prompt_tokens") or 0)
    return Usage(input_tokens=max(0, prompt - cached), output_tokens=int(raw.get("completion_tokens") or 0),
                 cache_read_tokens=cached, cache_write_tokens=0)


def parse_response(body: Mapping) -> ParsedResponse:
    if body.get("error"):
        raise classify_error(200, {}, json.dumps(body).encode())
    try:
        choice = body["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        calls = tuple(ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"].get("arguments")
                               or "{}") for c in message.get("tool_calls") or ())
        finish = FINISH_REASONS.get(choice.get("finish_reason") or "stop", FINISH_STOP)
        if finish == FINISH_TOOL_CALLS and not calls:
            finish = FINISH_STOP
        usage = body.get("usage") or choice.get("usage") or {}
        return ParsedResponse(text=text, finish_reason=finish, usage=_usage(usage), tool_calls=calls)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ProviderError(KIND_SERVER, f"Unreadable chat completion: {exc!r}") from None


def new_stream_state() -> StreamState:
    return StreamState()


def _take_usage(state: StreamState, raw: Mapping) -> UsageUpdate:
    usage = _usage(raw)
    state.input_tokens, state.output_tokens = usage.input_tokens, usage.output_tokens
    state.cache_read_tokens = usage.cache_read_tokens
    return UsageUpdate(usage)


def parse_stream_event(state: StreamState, event: str | None, data: str) -> list:
    """One `data:` payload in, normalized events out. Raises ProviderError for an error chunk or bad JSON."""
    if data.strip() == "[DONE]":
        state.finished = True
        finish = state.finish_reason or FINISH_STOP
        if finish == FINISH_TOOL_CALLS and state.tools is None:
            finish = FINISH_STOP
        return [*_close_tools(state), Finish(finish)]
    try:
        payload = orjson.loads(data)
    except ValueError:
        raise ProviderError(KIND_SERVER, "The provider sent a malformed stream chunk.") from None
    if not isinstance(payload, dict):
        raise ProviderError(KIND_SERVER, "The provider sent a malformed stream chunk.")
    if payload.get("error"):
        raise classify_error(200, {}, data.encode())
    events: list = []
    for choice in payload.get("choices") or ():
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content:
            events.append(TextDelta(content))
        if delta.get("tool_calls"):
            _tool_fragments(state, delta["tool_calls"], events)
        if choice.get("finish_reason"):
            state.finish_reason = FINISH_REASONS.get(choice["finish_reason"], FINISH_STOP)
        if choice.get("usage"):  # Moonshot: usage inside the last choice
            events.append(_take_usage(state, choice["usage"]))
    if payload.get("usage"):
        events.append(_take_usage(state, payload["usage"]))
    return events


def _tool_fragments(state: StreamState, calls: list, events: list) -> None:
    tools = state.tools or ToolStreams()
    state.tools = tools
    for call in calls:
        key = call.get("index", 0)
        function = call.get("function") or {}
        index = tools.index.get(key)
        if index is None:
            # The calls before this one are complete (calls stream one after another): one that sent no argument
            # text has "{}", said now, before the next call starts (an Anthropic stream cannot go back to it).
            events += _close_tools(state)
            tools.with_arguments.update(tools.index)
            index = tools.index[key] = len(tools.index)
            events.append(ToolCallStart(index, call.get("id") or "", function.get("name") or ""))
        if function.get("arguments"):
            tools.with_arguments.add(key)
            events.append(ToolCallDelta(index, function["arguments"]))


def _close_tools(state: StreamState) -> list:
    """A tool call that sent no argument text has the arguments "{}" (as in a whole answer)."""
    tools = state.tools
    if tools is None:
        return []
    return [ToolCallDelta(index, "{}") for key, index in tools.index.items() if key not in tools.with_arguments]


def stream_usage(state: StreamState) -> Usage | None:
    return state.usage()


def classify_error(status: int, headers: Mapping, body: bytes) -> ProviderError:
    error_type, code, message = "", "", ""
    try:
        error = json.loads(body).get("error") or {}
        if isinstance(error, str):
            message = error
        else:
            error_type, code, message = error.get("type") or "", error.get("code") or "", error.get("message") or ""
    except (ValueError, AttributeError):
        message = body[:200].decode(errors="replace")
    kind = ERROR_TYPES.get(str(code)) or ERROR_TYPES.get(error_type)
    if kind is None:
        if status == 429:
            kind = KIND_RATE_LIMITED
        elif status in (401, 403):
            kind = KIND_AUTH
        elif status == 413:
            kind = KIND_CONTEXT_LENGTH
        elif 400 <= status < 500 and status != 408:
            kind = KIND_BAD_REQUEST
        else:
            kind = KIND_SERVER
    lowered = message.lower()
    if kind == KIND_BAD_REQUEST and any(h in lowered for h in _CONTEXT_HINTS):
        kind = KIND_CONTEXT_LENGTH
    elif kind == KIND_BAD_REQUEST and any(h in lowered for h in _FILTER_HINTS):
        kind = KIND_CONTENT_FILTER
    retryable = None
    if error_type in ("exceeded_current_quota_error", "insufficient_quota") or code == "insufficient_quota":
        retryable = False  # the account is out of credit: waiting will not help, another provider might
    if status == 404:
        kind, retryable = KIND_SERVER, False
    retry_after = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
    return ProviderError(kind, message or f"Provider returned HTTP {status}", retryable=retryable,
                         status=status or None, retry_after=retry_after)
