"""Anthropic Messages API adapter (https://docs.anthropic.com/en/api/messages). Pure: no I/O.

Temperature: Anthropic accepts 0–1, OpenAI 0–2 (Moonshot 0–1). A request's temperature is clamped to the answering
provider's range, not rescaled: 1.0 is the model's own, unscaled distribution in every one of these APIs, so
values inside the shared range mean the same everywhere, and a value above 1 (OpenAI only) becomes Anthropic's
most random setting instead of failing a request another endpoint of the chain would take. `seed` has no
Anthropic counterpart and is not sent (it is best-effort by OpenAI's own definition).

Stop sequences: Anthropic says which one ended the answer (`stop_reason` "stop_sequence" with `stop_sequence`);
it travels as Finish.stop_sequence / ParsedResponse.stop_sequence.

Tools (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use): a ToolUseBlock's JSON
`arguments` become the `input` object, ToolResultBlocks `tool_result` blocks (with `is_error`); tool_choice auto /
none / required / tool become auto / none / any / tool, and parallel_tool_calls false
`disable_parallel_tool_use`. In a stream a tool call is a `content_block_start` of type tool_use, then
`input_json_delta` fragments, then `content_block_stop`; stop_reason `tool_use` is FINISH_TOOL_CALLS. A tool
call without input sends no fragment: "{}" is passed on at its block's stop, so the arguments are always JSON.

Structured output has no Anthropic parameter here: it is emulated exactly by a forced tool (JSON_TOOL) whose
input_schema is the schema; that tool's input comes back as the answer's text (its fragments as text deltas),
and its stop_reason tool_use as a plain stop. An endpoint is not chosen for a request with both tools and a
response format (routing.policy), where the forced tool would take the client's tools away.

Prompt caching: `cache_control` on system blocks, message blocks and tools is forwarded as sent;
ChatRequest.cache_breakpoint adds one at the end of the stable history (the message before the newest user turn).

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
from . import JSON_TOOL, ParsedResponse, StreamState, ToolStreams, UpstreamRequest, parse_retry_after

API_VERSION = "2023-06-01"
MAX_TEMPERATURE = 1.0
ACCEPTS_IMAGE_URLS = True  # an image `source` of type "url" (Anthropic fetches it)
BREAKPOINT = {"type": "ephemeral"}

STOP_REASONS = {
    "end_turn": FINISH_STOP,
    "stop_sequence": FINISH_STOP,
    "tool_use": FINISH_TOOL_CALLS,
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


def accepts_image_urls(model: str) -> bool:
    return ACCEPTS_IMAGE_URLS


def accepts_forced_tool_choice(model: str) -> bool:
    return True  # tool_choice any / tool


def accepts_json_schema(model: str) -> bool:
    return True  # emulated exactly: the forced tool's input_schema is the schema


def _block(block) -> dict:
    kind = type(block)
    if kind is TextBlock:
        out = {"type": "text", "text": block.text}
    elif kind is ToolUseBlock:
        out = {"type": "tool_use", "id": block.id, "name": block.name, "input": orjson.loads(block.arguments)}
    elif kind is ToolResultBlock:
        content = block.content if isinstance(block.content, str) else [_block(b) for b in block.content]
        out = {"type": "tool_result", "tool_use_id": block.tool_use_id, "content": content}
        if block.is_error:
            out["is_error"] = True
    elif kind is ImageBlock:
        source = ({"type": "base64", "media_type": block.media_type, "data": block.data} if block.data is not None
                  else {"type": "url", "url": block.url})
        out = {"type": "image", "source": source}
    else:
        raise TypeError(f"not a content block: {block!r}")
    if block.cache_control:
        out["cache_control"] = block.cache_control
    return out


def _messages(request: ChatRequest) -> list[dict]:
    messages = [{"role": m.role, "content": m.content if m.blocks is None else [_block(b) for b in m.blocks]}
                for m in request.messages]
    if request.cache_breakpoint:
        newest_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=0)
        if newest_user > 0:
            stable = messages[newest_user - 1]
            content = stable["content"]
            if isinstance(content, str):
                stable["content"] = [{"type": "text", "text": content, "cache_control": BREAKPOINT}]
            else:
                content[-1] = {**content[-1], "cache_control": BREAKPOINT}
    return messages


def _tools(request: ChatRequest, body: dict) -> None:
    """tools, tool_choice, and structured output's forced tool."""
    tools = []
    for spec in request.tools or ():
        tool = {"name": spec.name, "input_schema": spec.parameters}
        if spec.description is not None:
            tool["description"] = spec.description
        if spec.strict is not None:
            tool["strict"] = spec.strict
        if spec.cache_control:
            tool["cache_control"] = spec.cache_control
        tools.append(tool)
    choice = request.tool_choice
    fmt = request.response_format
    if fmt is not None:
        schema = fmt.schema if fmt.kind == "json_schema" and fmt.schema is not None else {"type": "object"}
        tools.append({"name": JSON_TOOL, "description": fmt.description or "Give the answer as this JSON object.",
                      "input_schema": schema})
        body["tools"] = tools
        body["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
        return
    if not tools:
        return
    body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"},
                               "tool": {"type": "tool", "name": choice.name}}[choice.mode]
    if request.parallel_tool_calls is False and (choice is None or choice.mode != "none"):
        body.setdefault("tool_choice", {"type": "auto"})
        body["tool_choice"]["disable_parallel_tool_use"] = True


def build_request(*, base_url: str, api_key: str, model: str, request: ChatRequest, stream: bool,
                  max_tokens: int) -> UpstreamRequest:
    body: dict = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages]
        if not request.cache_breakpoint and all(m.blocks is None for m in request.messages)
        else _messages(request),
    }
    if request.system_blocks:
        body["system"] = [_block(b) for b in request.system_blocks]
    elif request.system:
        body["system"] = request.system
    if request.tools or request.response_format is not None:
        _tools(request, body)
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
        texts, calls = [], []
        for block in body["content"]:
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text", ""))
            elif kind == "tool_use":
                arguments = orjson.dumps(block.get("input") or {}).decode()
                if block["name"] == JSON_TOOL:
                    texts.append(arguments)  # structured output's forced tool: the answer itself
                else:
                    calls.append(ToolCall(id=block["id"], name=block["name"], arguments=arguments))
        stop = body.get("stop_reason") or "end_turn"
        finish = STOP_REASONS.get(stop, FINISH_STOP)
        if finish == FINISH_TOOL_CALLS and not calls:
            finish = FINISH_STOP
        return ParsedResponse(text="".join(texts), finish_reason=finish, usage=_usage(body.get("usage") or {}),
                              stop_sequence=_stop_sequence(stop, body), tool_calls=tuple(calls))
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
        if delta.get("type") == "input_json_delta" and state.tools is not None:
            return _tool_fragment(state.tools, payload.get("index"), delta.get("partial_json") or "")
        return []  # thinking, citations: not part of the answer
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
            if state.finish_reason == FINISH_TOOL_CALLS and (state.tools is None or not state.tools.index):
                state.finish_reason = FINISH_STOP  # only structured output's forced tool was called
            state.stop_sequence = _stop_sequence(stop, delta)
        return events
    if kind == "message_stop":
        state.finished = True
        return [Finish(state.finish_reason or FINISH_STOP, state.stop_sequence)]
    if kind == "content_block_start":
        block = payload.get("content_block") or {}
        if block.get("type") != "tool_use":
            return []
        tools = state.tools or ToolStreams()
        state.tools = tools
        if block.get("name") == JSON_TOOL:
            tools.json_blocks.add(payload.get("index"))
            return []
        index = tools.index[payload.get("index")] = len(tools.index)
        return [ToolCallStart(index, block.get("id") or "", block.get("name") or "")]
    if kind == "content_block_stop":
        tools, block = state.tools, payload.get("index")
        if tools is None or block in tools.with_arguments:
            return []
        if block in tools.json_blocks:
            return [TextDelta("{}")]
        return [ToolCallDelta(tools.index[block], "{}")] if block in tools.index else []
    if kind == "error":
        raise classify_error(200, {}, data.encode())
    return []  # ping, and event types added after this was written


def _tool_fragment(tools: ToolStreams, block, fragment: str) -> list:
    if not fragment:
        return []
    tools.with_arguments.add(block)
    if block in tools.json_blocks:
        return [TextDelta(fragment)]
    index = tools.index.get(block)
    return [] if index is None else [ToolCallDelta(index, fragment)]


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
