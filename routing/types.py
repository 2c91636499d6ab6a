"""Normalized types of the routing core: what callers (chat worker, proxy API) send and receive.

Callers never see provider differences: every provider's answer becomes a `RouteResult` with the same finish
reasons and the same `Usage` shape. These are plain frozen dataclasses (no Django), so they cost nothing to build
on the hot path and can be pickled into Celery or serialized with `as_dict()`.

Usage rule (the one used for pricing everywhere): `input_tokens` counts only the uncached, non-cache-write
prompt tokens; `cache_read_tokens` and `cache_write_tokens` are counted separately and priced at their own
rates. Anthropic already reports it this way; for OpenAI-compatible providers `prompt_tokens` includes the
cached tokens, so the adapter subtracts them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal

ROLES = ("user", "assistant")
TIERS = ("auto", "max")

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_CONTENT_FILTER = "content_filter"
FINISH_ERROR = "error"
FINISH_CANCELLED = "cancelled"
FINISH_TOOL_CALLS = "tool_calls"  # the answer asks the client to run tools (RouteResult.tool_calls)
FINISH_REASONS = (FINISH_STOP, FINISH_LENGTH, FINISH_CONTENT_FILTER, FINISH_ERROR, FINISH_CANCELLED,
                  FINISH_TOOL_CALLS)


# --- Content blocks (the proxy's tools, images and cache breakpoints; a chat turn is plain text) ---
# A message is text (`ChatMessage.content`) and, when it carries more than text, its `blocks` in order. `content`
# is then the message's text rendition (text, tool arguments and results; no image data), which the estimators
# and the smart scorer read; the adapters send `blocks`. `cache_control` is Anthropic's breakpoint marker
# ({"type": "ephemeral", "ttl"?}), forwarded to Anthropic endpoints only.


@dataclass(frozen=True, slots=True)
class TextBlock:
    text: str
    cache_control: dict | None = None


@dataclass(frozen=True, slots=True)
class ImageBlock:
    """An image: base64 `data` with its `media_type`, or a `url` (forwarded only to providers that fetch URLs;
    the proxy never fetches one). `size` is the decoded size in bytes of base64 data."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    detail: str | None = None  # OpenAI's image detail (auto/low/high); Anthropic has none
    size: int = 0
    cache_control: dict | None = None


@dataclass(frozen=True, slots=True)
class ToolUseBlock:
    """An assistant's call of a tool. `arguments` is the JSON text of the input object (OpenAI's form; an
    Anthropic `input` object is carried as its compact JSON)."""

    id: str
    name: str
    arguments: str
    cache_control: dict | None = None


@dataclass(frozen=True, slots=True)
class ToolResultBlock:
    """A tool's result, answering the ToolUseBlock with id `tool_use_id` (an OpenAI `tool` message, an Anthropic
    `tool_result` block in a user message)."""

    tool_use_id: str
    content: str | tuple = ""  # text, or a tuple of TextBlock / ImageBlock
    is_error: bool = False
    cache_control: dict | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    parameters: dict  # a JSON Schema object
    description: str | None = None
    strict: bool | None = None  # OpenAI's strict schema adherence (OpenAI-compatible providers only)
    cache_control: dict | None = None


TOOL_CHOICES = ("auto", "none", "required", "tool")  # OpenAI auto/none/required/named, Anthropic auto/none/any/tool


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: str  # one of TOOL_CHOICES
    name: str | None = None  # the tool, for mode "tool"


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """Structured output: "json_object" (any JSON object) or "json_schema" (an object valid for `schema`)."""

    kind: str
    schema: dict | None = None
    name: str | None = None
    description: str | None = None
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call in an answer: the provider's id, the tool's name, the arguments as JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "user" or "assistant"; the system prompt goes in ChatRequest.system
    content: str
    blocks: tuple | None = None  # the content blocks in order, when the message is more than text (see above)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...] | list[ChatMessage]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | list[str] | None = None
    stream: bool = True
    seed: int | None = None  # best-effort determinism; only OpenAI-compatible providers take it
    # The proxy's extras (None on a chat turn): system text blocks with cache breakpoints, tools, structured output.
    system_blocks: tuple[TextBlock, ...] | None = None
    tools: tuple[ToolSpec, ...] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None  # None: the provider's default (parallel calls allowed)
    response_format: ResponseFormat | None = None
    # Put a prompt-cache breakpoint at the end of the stable history (the message before the newest user turn),
    # so the next turn reads the prefix from the cache (Anthropic endpoints; others cache automatically).
    cache_breakpoint: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    # True when output_tokens came from routing.cost.estimate_tokens because the provider never reported them
    # (a stream cut short by a mid-stream error, a stop, or a client that went away).
    output_estimated: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Prices:
    """Unit prices in USD per million tokens, as used to price one request (kept on the usage row)."""

    input: Decimal
    output: Decimal
    cache_write: Decimal
    cache_read: Decimal

    def as_dict(self) -> dict:
        return {k: str(v) for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class SmartDecision:
    """Smart Auto's decision for one Auto request: the scorer's score, the threshold of the tenant's dial level,
    and whether the request went to the MAX chain. `held` says why a score over the threshold stayed on Auto
    (the budget downgrade wins over escalation)."""

    score: float
    threshold: float
    level: int
    version: str
    escalated: bool = False
    held: str = ""

    @property
    def header(self) -> str:
        """The proxy's `x-kiwiclaw-route` header value."""
        return f"smart; score={self.score:.2f}; escalated={int(self.escalated)}"


# Attempt outcomes in the routing decision log.
OUTCOME_OK = "ok"
OUTCOME_ERROR = "error"
OUTCOME_SKIPPED = "skipped"  # not called: breaker open, or half-open trial taken by another process
OUTCOME_CANCELLED = "cancelled"


@dataclass(slots=True)
class Attempt:
    """One call (or skip) of one endpoint. The list of attempts is the routing decision log."""

    endpoint: str
    provider: str
    outcome: str
    error_kind: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    detail: str = ""

    def as_dict(self) -> dict:
        return {
            "endpoint": self.endpoint,
            "provider": self.provider,
            "outcome": self.outcome,
            "error_kind": self.error_kind,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "detail": self.detail,
        }


@dataclass(slots=True)
class RouteResult:
    text: str
    finish_reason: str  # one of FINISH_REASONS
    tier: str
    endpoint: str  # our catalog slug of the endpoint that answered
    provider: str  # provider config slug
    upstream_model: str
    usage: Usage
    attempts: list[Attempt] = field(default_factory=list)
    fallback_count: int = 0  # endpoints that failed before the one that answered
    reason: str = ""  # why this chain, in words (policy decisions: tier, downgrade, skips)
    cost: Decimal = Decimal("0")  # provider cost from routing.cost.price_usage at the answering endpoint
    prices: Prices | None = None
    error: str | None = None  # message for people when finish_reason == "error"
    requested_tier: str = ""  # what the caller asked for ("" for a model named explicitly); `tier` is what answered
    smart: SmartDecision | None = None  # smart Auto's decision, for an Auto request it scored
    # The stop sequence that ended the answer (finish_reason "stop"), when the provider said which one.
    stop_sequence: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # the tools the answer calls (finish_reason "tool_calls")

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "requested_tier": self.requested_tier,
            "smart": asdict(self.smart) if self.smart else None,
            "finish_reason": self.finish_reason,
            "tier": self.tier,
            "endpoint": self.endpoint,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "usage": self.usage.as_dict(),
            "attempts": [a.as_dict() for a in self.attempts],
            "fallback_count": self.fallback_count,
            "reason": self.reason,
            "cost": str(self.cost),
            "prices": self.prices.as_dict() if self.prices else None,
            "error": self.error,
            "stop_sequence": self.stop_sequence,
            "tool_calls": [asdict(c) for c in self.tool_calls],
        }


# --- Stream events yielded by routing.core.route_stream ---


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """A tool call begins: `index` counts the answer's tool calls from 0 (OpenAI's `tool_calls[].index`)."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of tool call `index`'s arguments JSON text; the fragments joined are the arguments."""

    index: int
    arguments: str


@dataclass(frozen=True, slots=True)
class Routed:
    """Which endpoint is answering: yielded once, just before the first text or tool-call delta, so a caller can
    send its routing facts (the proxy's response headers) before the answer is complete."""

    tier: str
    endpoint: str
    provider: str
    upstream_model: str
    fallback_count: int
    smart: SmartDecision | None = None


@dataclass(frozen=True, slots=True)
class UsageUpdate:
    usage: Usage


@dataclass(frozen=True, slots=True)
class Done:
    result: RouteResult


# Internal to the adapters and dispatch (not yielded by the core): the provider said the answer ended.
@dataclass(frozen=True, slots=True)
class Finish:
    finish_reason: str
    stop_sequence: str | None = None  # the request's stop sequence that ended the answer, if the provider says
