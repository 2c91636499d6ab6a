"""Request parsing for both wire protocols, into one `ParsedCall` the handler routes.

Validation happens here, before any quota is spent. Every request field is either forwarded to the providers
that honour it, recorded, or refused with ProxyError("invalid") naming the field: nothing is dropped silently,
so a client never gets an answer it did not ask for. An unknown field is refused too. The decisions (kept in
step with docs/contracts.md, "proxy: request fields"):

OpenAI `POST /v1/chat/completions`
  forwarded      messages (text and image_url parts, assistant tool_calls, tool messages; system/developer become the
                 system prompt: proxy/content.py), max_tokens / max_completion_tokens, temperature (clamped per
                 provider: routing.providers), top_p, stop (at most routing.core.MAX_STOP_SEQUENCES), stream,
                 stream_options.include_usage (answered by the proxy), seed (to OpenAI-compatible providers;
                 best-effort by OpenAI's own definition, Anthropic has none), tools (function tools), tool_choice,
                 parallel_tool_calls, response_format (text / json_object / json_schema: proxy/tools.py)
  recorded       user, safety_identifier: the tenant's end-user id on the usage row (one id: if both are sent
                 they must agree)
  accepted as the default only (anything else refused)
                 n = 1, store = false, service_tier = auto/default, verbosity = medium, metadata = {} (metadata is
                 kept only with stored completions), function_call = none, modalities = [text],
                 frequency/presence_penalty = 0, logprobs = false, top_logprobs = 0, logit_bias = {}
  refused        functions (the deprecated form of tools), audio, prediction, web_search_options, reasoning_effort,
                 prompt_cache_key, prompt_cache_retention (providers cache prefixes automatically; reasoning is
                 chosen by the tier), a message's `name`, a content part's unknown keys, any unknown field

Anthropic `POST /v1/messages` (header `anthropic-version` 2023-06-01 or 2026-10-21; absent = 2023-06-01)
  forwarded      messages (text, image, tool_use and tool_result blocks, cache_control on each), system (text or
                 text blocks with cache_control), max_tokens, temperature (0–1), top_p (both refused under
                 2026-10-21, which removed them), stop_sequences (at most MAX_STOP_SEQUENCES), stream, tools (client
                 tools, cache_control), tool_choice (auto / any / tool / none, disable_parallel_tool_use),
                 cache_control (top level: a breakpoint on the last block, as Anthropic applies it),
                 output_config.format (json_schema: structured output, proxy/tools.py)
  recorded       metadata.user_id: the tenant's end-user id (metadata has no other field)
  accepted as the default only
                 service_tier = auto/standard_only (KiwiClaw never buys priority capacity), thinking disabled
  refused        output_config.effort (chosen by the tier), top_k, thinking enabled, container, mcp_servers, server tools, and any other field

A key sent as null counts as absent (SDK objects round-trip with null fields), as does an empty list or object
on a message or content part.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

import orjson

from billing.models import END_USER_MAX_LENGTH
from routing.core import MAX_STOP_SEQUENCES
from routing.types import ChatRequest, ImageBlock

from . import content, tools
from .errors import ProxyError

TIER_ALIASES = {"auto": "auto", "max": "max", "kiwiclaw/auto": "auto", "kiwiclaw/max": "max"}

# Rough, provider-independent token estimate used only for rate limiting (TPM) before the call:
# about four characters per token for English text, plus a few tokens of framing per message.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
# An image's tokens, whatever its size: about what Anthropic charges for one near its size limit (1.15 megapixels).
IMAGE_TOKENS = 1600


@dataclass
class ParsedCall:
    protocol: str
    model: str  # as the client sent it
    tier: str | None  # "auto"/"max" when `model` names a tier
    endpoint: str | None  # a catalog endpoint slug when `model` names one
    request: ChatRequest
    stream: bool
    include_usage: bool = False
    end_user: str | None = None  # the tenant's end-user id (OpenAI `user` / Anthropic `metadata.user_id`)

    def estimated_input_tokens(self) -> int:
        request = self.request
        chars = len(request.system or "") + sum(len(m.content) for m in request.messages)
        tokens = chars // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE * (len(request.messages) + 1)
        if request.tools:  # tool definitions are part of the prompt
            tokens += sum(len(orjson.dumps(t.parameters)) + len(t.name) + len(t.description or "")
                          for t in request.tools) // CHARS_PER_TOKEN
        for message in request.messages:
            if message.blocks is not None:
                tokens += IMAGE_TOKENS * sum(type(b) is ImageBlock for b in message.blocks)
        return tokens


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


def _stop_list(value, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if (not isinstance(value, list) or len(value) > MAX_STOP_SEQUENCES
            or not all(isinstance(s, str) and s for s in value)):
        raise _invalid(f"`{name}` must be a non-empty string or a list of at most {MAX_STOP_SEQUENCES} non-empty "
                       "strings.", name)
    return tuple(value) or None


END_USER_MAX = END_USER_MAX_LENGTH  # the usage row's column; Anthropic documents metadata.user_id up to 256
_END_USER = re.compile(rf"[\x21-\x7e]{{1,{END_USER_MAX}}}")


def _end_user(value, name: str) -> str | None:
    """An end-user id to record: an opaque id (a hash, a uuid, your own user id) of printable ASCII without
    spaces, at most END_USER_MAX characters. An empty string means none."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _END_USER.fullmatch(value):
        raise _invalid(f"`{name}` must be an opaque id of at most {END_USER_MAX} printable ASCII characters "
                       "without spaces (a hash or uuid of your user, not personal data).", name)
    return value


ANTHROPIC_VERSIONS = ("2023-06-01", "2026-10-21")
# API version 2026-10-21 removed the sampling parameters: a request that sends one is refused, even at its default
# (https://platform.claude.com/docs/en/api/migration-2026-10-21).
_SAMPLING_REMOVED = {"2026-10-21": ("temperature", "top_p", "top_k")}


def check_anthropic_version(headers: Mapping[str, str]) -> str:
    """The `anthropic-version` header of a /v1/messages request: 2023-06-01 or 2026-10-21 (what the current SDKs
    send). Absent is taken as 2023-06-01, as before this check (curl users, older clients); 2023-01-01 (another
    stream format) or an unknown value is refused, naming the header."""
    version = headers.get("anthropic-version")
    if version is None:
        return ANTHROPIC_VERSIONS[0]
    if version not in ANTHROPIC_VERSIONS:
        raise _invalid(f"`anthropic-version` {version!r} is not supported: use one of "
                       f"{', '.join(ANTHROPIC_VERSIONS)}.", "anthropic-version")
    return version


_text_parts = content.text_parts
_no_extra_keys = content.no_extra_keys


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
    "reasoning_effort", "prompt_cache_key", "prompt_cache_retention", "safety_identifier", "verbosity",
})


def parse_openai(body: bytes) -> ParsedCall:
    data = load_json_object(body)
    _check_unknown(data, OPENAI_KNOWN)
    model, tier, endpoint = _model(data)

    _reject(data, "n", data.get("n") in (None, 1), "only one choice (n = 1) is generated.")
    _reject(data, "functions", not data.get("functions"), "`functions` is deprecated; send `tools`.")
    _reject(data, "function_call", data.get("function_call") in (None, "none"),
            "`function_call` is deprecated; send `tool_choice`.")
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
    _reject(data, "store", data.get("store") in (None, False), "stored completions are not available.")
    _reject(data, "metadata", data.get("metadata") in (None, {}),
            "metadata is kept only with stored completions, which are not available; send your end-user id "
            "in `user`.")
    _reject(data, "service_tier", data.get("service_tier") in (None, "auto", "default"),
            "requests run on the providers' default tier (\"auto\" or \"default\").")
    _reject(data, "verbosity", data.get("verbosity") in (None, "medium"), "only the default (medium) is available.")
    _reject(data, "prompt_cache_key", data.get("prompt_cache_key") is None, "the providers cache prompt prefixes "
            "automatically; there is no cache key to set.")
    _reject(data, "prompt_cache_retention", data.get("prompt_cache_retention") is None, "the providers cache "
            "prompt prefixes automatically, for their own retention.")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not -2**63 <= seed < 2**63):
        raise _invalid("`seed` must be an integer.", "seed")

    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _invalid("`messages` must be a non-empty list of messages.", "messages")
    system_parts, messages = content.openai_messages(raw_messages)
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
    end_user = _end_user(data.get("user"), "user")
    safety_identifier = _end_user(data.get("safety_identifier"), "safety_identifier")
    if end_user and safety_identifier and end_user != safety_identifier:
        raise _invalid("`safety_identifier` and `user` name different end users; send one id.", "safety_identifier")

    request = ChatRequest(
        messages=tuple(messages),
        system="\n\n".join(system_parts) or None,
        max_tokens=max_tokens,
        temperature=_number(data, "temperature", 0, 2),
        top_p=_number(data, "top_p", 0, 1),
        stop=_stop_list(data.get("stop"), "stop"),
        stream=stream,
        seed=seed,
    )
    if "tools" in data or "tool_choice" in data or "parallel_tool_calls" in data or "response_format" in data:
        specs, choice, parallel = tools.openai_tools(data)
        request = replace(request, tools=specs, tool_choice=choice, parallel_tool_calls=parallel,
                          response_format=tools.openai_response_format(data.get("response_format")))
    return ParsedCall(protocol="openai", model=model, tier=tier, endpoint=endpoint, request=request,
                      stream=stream, include_usage=include_usage, end_user=end_user or safety_identifier)


# --- Anthropic messages ---

ANTHROPIC_KNOWN = frozenset({
    "model", "messages", "system", "max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "stream",
    "metadata", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers", "cache_control",
    "output_config",
})


def parse_anthropic(body: bytes, version: str = ANTHROPIC_VERSIONS[0]) -> ParsedCall:
    data = load_json_object(body)
    _check_unknown(data, ANTHROPIC_KNOWN)
    model, tier, endpoint = _model(data)
    for name in _SAMPLING_REMOVED.get(version, ()):
        _reject(data, name, False, f"anthropic-version {version} has no sampling parameters.")

    thinking = data.get("thinking")
    _reject(data, "thinking", thinking is None or (isinstance(thinking, dict) and thinking.get("type") == "disabled"),
            "extended thinking is chosen by the tier; use model \"max\".")
    _reject(data, "top_k", data.get("top_k") is None, "top_k sampling is not available.")
    _reject(data, "container", data.get("container") is None, "containers are not available.")
    _reject(data, "mcp_servers", not data.get("mcp_servers"), "MCP servers are not available.")
    output_format = tools.anthropic_output_format(data.get("output_config"))
    _reject(data, "service_tier", data.get("service_tier") in (None, "auto", "standard_only"),
            "use \"auto\" or \"standard_only\" (requests run on standard capacity).")

    max_tokens = _positive_int(data, "max_tokens")
    if max_tokens is None:
        raise _invalid("`max_tokens` is required.", "max_tokens")

    system, system_blocks = content.anthropic_system(data.get("system"))

    raw_messages = data.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _invalid("`messages` must be a non-empty list of messages.", "messages")
    messages = content.anthropic_messages(raw_messages)
    top_cache = content.cache_control(data.get("cache_control"), "cache_control")
    if top_cache is not None:  # Anthropic applies it to the last cacheable block: so do we, for every provider
        messages[-1] = content.with_breakpoint(messages[-1], top_cache)

    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("`stream` must be true or false.", "stream")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _invalid("`metadata` must be an object.", "metadata")
    for name in metadata:
        if name != "user_id":
            raise _invalid(f"`metadata.{name}` is not a metadata field: only `user_id` is.", f"metadata.{name}")
    end_user = _end_user(metadata.get("user_id"), "metadata.user_id")

    request = ChatRequest(
        messages=tuple(messages),
        system=system or None,
        max_tokens=max_tokens,
        temperature=_number(data, "temperature", 0, 1),
        top_p=_number(data, "top_p", 0, 1),
        stop=_stop_list(data.get("stop_sequences"), "stop_sequences"),
        stream=bool(stream),
        system_blocks=system_blocks,
    )
    if "tools" in data or "tool_choice" in data or output_format is not None:
        specs, choice, parallel = tools.anthropic_tools(data)
        request = replace(request, tools=specs, tool_choice=choice, parallel_tool_calls=parallel,
                          response_format=output_format)
    return ParsedCall(protocol="anthropic", model=model, tier=tier, endpoint=endpoint, request=request,
                      stream=bool(stream), include_usage=True, end_user=end_user)
