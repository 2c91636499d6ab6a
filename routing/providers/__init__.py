"""Provider adapters: one module per wire protocol. Each is pure (no I/O): build_request, parse_response,
new_stream_state / parse_stream_event / stream_usage, classify_error. routing.dispatch does the I/O."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import ModuleType

from ..types import ToolCall, Usage

# The tool that emulates structured output where a provider has no response format (Anthropic): the proxy refuses
# a client tool of this name, so a tool call of it is always the answer itself.
JSON_TOOL = "kiwiclaw_json_answer"


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: dict


@dataclass(frozen=True, slots=True)
class ParsedResponse:
    text: str
    finish_reason: str
    usage: Usage
    stop_sequence: str | None = None  # which stop sequence ended the answer, when the provider says
    tool_calls: tuple[ToolCall, ...] = ()


class StreamState:
    """What a stream has told us so far. Usage counters stay None until the provider reports them."""

    __slots__ = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "finish_reason",
                 "stop_sequence", "finished", "tools")

    def __init__(self):
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.finish_reason: str | None = None
        self.stop_sequence: str | None = None
        self.finished = False
        self.tools: ToolStreams | None = None  # made at the first tool-call event (a text answer never has one)

    def usage(self) -> Usage | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return Usage(input_tokens=self.input_tokens or 0, output_tokens=self.output_tokens or 0,
                     cache_read_tokens=self.cache_read_tokens, cache_write_tokens=self.cache_write_tokens)


class ToolStreams:
    """The tool calls of one streamed answer: the provider's own key of each (Anthropic's content block index,
    OpenAI's tool call index) to our 0-based tool call index, and which have sent argument text yet."""

    __slots__ = ("index", "with_arguments", "json_blocks")

    def __init__(self):
        self.index: dict[int, int] = {}
        self.with_arguments: set[int] = set()
        self.json_blocks: set[int] = set()  # Anthropic: blocks of the structured-output tool (routing/json_tool)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def adapter_for(kind: str) -> ModuleType:
    from . import anthropic, openai_compat

    return {"anthropic": anthropic, "openai_compatible": openai_compat}[kind]
