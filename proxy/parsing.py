"""Request parsing for both wire protocols, into one `ParsedCall` the handler routes.

Validation happens here, before any quota is spent: a malformed body, an unknown field or a field whose meaning
we cannot honour (tools, n > 1, images, JSON mode...) raises ProxyError("invalid") naming the field, instead of
being dropped silently and giving the client an answer it did not ask for.
"""

from dataclasses import dataclass, field

import orjson

from routing.types import ChatMessage, ChatRequest

from .errors import ProxyError

TIER_ALIASES = {"auto": "auto", "max": "max", "kiwiclaw/auto": "auto", "kiwiclaw/max": "max"}

# Rough, provider-independent token estimate used only for rate limiting (TPM) before the call:
# about four characters per token for English text, plus a few tokens of framing per message.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


@dataclass
class ParsedCall:
    protocol: str
    model: str  # as the client sent it
    tier: str | None  # "auto"/"max" when `model` names a tier
    endpoint: str | None  # a catalog endpoint slug when `model` names one
    request: ChatRequest
    stream: bool
    include_usage: bool = False
    user: str | None = None
    metadata: dict = field(default_factory=dict)

    def estimated_input_tokens(self) -> int:
        chars = len(self.request.system or "") + sum(len(m.content) for m in self.request.messages)
        return chars // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE * (len(self.request.messages) + 1)


def _invalid(message: str, param: str | None = None) -> ProxyError:
    return ProxyError("invalid", message, param=param)


def load_json_object(body: bytes) -> dict:
    if not body:
        raise _invalid("The request body is empty; send a JSON object.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _invalid("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _invalid("The request body must be a JSON object.")
    return data


def _model(data: dict) -> tuple[str, str | None, str | None]:
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("`model` is required: use \"auto\" or \"max\".", "model")
    model = model.strip()
    tier = TIER_ALIASES.get(model.lower())
    return model, tier, None if tier else model


def _number(data: dict, name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _invalid(f"`{name}` must be a number from {low:g} to {high:g}.", name)
    return float(value)


def _positive_int(data: dict, name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > 1_000_000:
        raise _invalid(f"`{name}` must be a positive integer.", name)
    return value


def _stop_list(value, name: str, max_items: int) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if (not isinstance(value, list) or len(value) > max_items
            or not all(isinstance(s, str) and s for s in value)):
        raise _invalid(f"`{name}` must be a non-empty string or a list of at most {max_items} non-empty strings.",
                       name)
    return tuple(value) or None


def _text_parts(content, where: str) -> str:
    """Text of a message: a string, or a list of text parts. Anything else (images, audio, files, tool
    results) is refused: the routing core carries text only."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(f"`{where}` must be a string or a list of text parts.", where)
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise _invalid(f"`{where}[{i}]` is a {kind!r} part; only text parts are supported.", f"{where}[{i}]")
        texts.append(part["text"])
    return "\n".join(texts)


def _reject(data: dict, name: str, ok: bool, why: str) -> None:
    if name in data and not ok:
        raise _invalid(f"`{name}` is not supported by KiwiClaw: {why}", name)


def _check_unknown(data: dict, known: frozenset[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise _invalid(f"Unrecognized request argument supplied: {', '.join(unknown)}", unknown[0])


# --- OpenAI chat completions ---

OPENAI_KNOWN = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "stream",
    "stream_options", "user", "metadata", "n", "tools", "tool_choice", "functions", "function_call",
    "parallel_tool_calls", "response_format", "audio", "modalities", "logprobs", "top_logprobs", "logit_bias",
    "frequency_penalty", "presence_penalty", "seed", "store", "service_tier", "prediction", "web_search_options",
    "reasoning_effort", "prompt_cache_key", "safety_identifier", "verbosity",
})


def parse_openai(body: bytes) -> ParsedCall:
    data = load_json_object(body)
    _check_unknown(data, OPENAI_KNOWN)
    model, tier, endpoint = _model(data)

    _reject(data, "n", data.get("n") in (None, 1), "only one choice (n = 1) is generated.")
    _reject(data, "tools", not data.get("tools"), "tool calling is not available through the router.")
    _reject(data, "functions", not data.get("functions"), "function calling is not available through the router.")
    _reject(data, "tool_choice", data.get("tool_choice") in (None, "none"), "tool calling is not available.")
    _reject(data, "function_call", data.get("function_call") in (None, "none"), "function calling is not available.")
    fmt = data.get("response_format")
    _reject(data, "response_format", fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"),
            "only text answers are supported (no JSON mode or schemas).")
    _reject(data, "audio", data.get("audio") is None, "audio output is not supported.")
    _reject(data, "modalities", data.get("modalities") in (None, ["text"]), "only the text modality is supported.")
    _reject(data, "logprobs", not data.get("logprobs"), "log probabilities are not available.")
    _reject(data, "top_logprobs", data.get("top_logprobs") in (None, 0), "log probabilities are not available.")
    _reject(data, "logit_bias", not data.get("logit_bias"), "logit bias is not available.")
    _reject(data, "frequency_penalty", data.get("frequency_penalty") in (None, 0), "penalties are not available.")
    _reject(data, "presence_penalty", data.get("presence_penalty") in (None, 0), "penalties are not available.")
    _reject(data, "prediction", data.get("prediction") is None, "predicted outputs are not available.")
    _reject(data, "web_search_options", data.get("web_search_options") is None, "web search is not available.")
    _reject(data, "reasoning_effort", data.get("reasoning_effort") is None,
            "reasoning effort is chosen by the tier; use model \"max\" for maximum reasoning.")

    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _invalid("`messages` must be a non-empty list of messages.", "messages")
    system_parts: list[str] = []
    messages: list[ChatMessage] = []
    for i, msg in enumerate(raw_messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _invalid(f"`{where}` must be an object with `role` and `content`.", where)
        role = msg.get("role")
        if role in ("tool", "function") or msg.get("tool_calls") or msg.get("function_call"):
            raise _invalid(f"`{where}`: tool and function messages are not supported.", where)
        if role not in ("system", "developer", "user", "assistant"):
            raise _invalid(f"`{where}.role` must be one of system, developer, user, assistant.", f"{where}.role")
        if "content" not in msg or msg["content"] is None:
            raise _invalid(f"`{where}.content` is required.", f"{where}.content")
        text = _text_parts(msg["content"], f"{where}.content")
        if role in ("system", "developer"):
            system_parts.append(text)
        else:
            messages.append(ChatMessage(role=role, content=text))
    if not messages:
        raise _invalid("`messages` needs at least one user message besides the system prompt.", "messages")

    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("`stream` must be true or false.", "stream")
    stream = bool(stream)
    options = data.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise _invalid("`stream_options` is only allowed when `stream` is true.", "stream_options")
        if not isinstance(options, dict):
            raise _invalid("`stream_options` must be an object.", "stream_options")
        include_usage = options.get("include_usage") is True

    max_tokens = _positive_int(data, "max_completion_tokens") or _positive_int(data, "max_tokens")
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise _invalid("`user` must be a string.", "user")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _invalid("`metadata` must be an object of string values.", "metadata")

    request = ChatRequest(
        messages=tuple(messages),
        system="\n\n".join(system_parts) or None,
        max_tokens=max_tokens,
        temperature=_number(data, "temperature", 0, 2),
        top_p=_number(data, "top_p", 0, 1),
        stop=_stop_list(data.get("stop"), "stop", 4),
        stream=stream,
    )
    return ParsedCall(protocol="openai", model=model, tier=tier, endpoint=endpoint, request=request,
                      stream=stream, include_usage=include_usage, user=user, metadata=metadata)


# --- Anthropic messages ---

ANTHROPIC_KNOWN = frozenset({
    "model", "messages", "system", "max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "stream",
    "metadata", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers",
})


def parse_anthropic(body: bytes) -> ParsedCall:
    data = load_json_object(body)
    _check_unknown(data, ANTHROPIC_KNOWN)
    model, tier, endpoint = _model(data)

    _reject(data, "tools", not data.get("tools"), "tool use is not available through the router.")
    _reject(data, "tool_choice", data.get("tool_choice") is None
            or (isinstance(data["tool_choice"], dict) and data["tool_choice"].get("type") == "none"),
            "tool use is not available.")
    thinking = data.get("thinking")
    _reject(data, "thinking", thinking is None or (isinstance(thinking, dict) and thinking.get("type") == "disabled"),
            "extended thinking is chosen by the tier; use model \"max\".")
    _reject(data, "top_k", data.get("top_k") is None, "top_k sampling is not available.")
    _reject(data, "container", data.get("container") is None, "containers are not available.")
    _reject(data, "mcp_servers", not data.get("mcp_servers"), "MCP servers are not available.")

    max_tokens = _positive_int(data, "max_tokens")
    if max_tokens is None:
        raise _invalid("`max_tokens` is required.", "max_tokens")

    system = data.get("system")
    if system is not None:
        system = _text_parts(system, "system")

    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _invalid("`messages` must be a non-empty list of messages.", "messages")
    messages: list[ChatMessage] = []
    for i, msg in enumerate(raw_messages):
        where = f"messages.{i}"
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise _invalid(f"`{where}.role` must be \"user\" or \"assistant\".", where)
        if "content" not in msg:
            raise _invalid(f"`{where}.content` is required.", where)
        messages.append(ChatMessage(role=msg["role"], content=_text_parts(msg["content"], f"{where}.content")))

    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("`stream` must be true or false.", "stream")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _invalid("`metadata` must be an object.", "metadata")
    user = metadata.get("user_id")
    if user is not None and not isinstance(user, str):
        raise _invalid("`metadata.user_id` must be a string.", "metadata.user_id")

    request = ChatRequest(
        messages=tuple(messages),
        system=system or None,
        max_tokens=max_tokens,
        temperature=_number(data, "temperature", 0, 1),
        top_p=_number(data, "top_p", 0, 1),
        stop=_stop_list(data.get("stop_sequences"), "stop_sequences", 16),
        stream=bool(stream),
    )
    return ParsedCall(protocol="anthropic", model=model, tier=tier, endpoint=endpoint, request=request,
                      stream=bool(stream), include_usage=True, user=user, metadata=metadata)
