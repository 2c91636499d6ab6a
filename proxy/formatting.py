"""Response bodies and stream events in each protocol's wire format.

Tool calls: OpenAI's `message.tool_calls` (arguments as JSON text) and, streamed, `delta.tool_calls[i]` with
`index`, then `id`, `type` and `function.name` on its first fragment and `function.arguments` fragments after
(https://platform.openai.com/docs/api-reference/chat-streaming); Anthropic's `tool_use` blocks (input as an
object) and, streamed, `content_block_start` of type tool_use (input {}), `input_json_delta` fragments,
`content_block_stop` (https://docs.anthropic.com/en/docs/build-with-claude/streaming). Arguments a provider sent
that are not a JSON object cannot be an Anthropic `input`: they come as {"_unparsed_arguments": "<the text>"}.
Both APIs stream a message's tool calls one after another (a call's fragments, then the next call): an Anthropic
stream cannot return to a block it has stopped, so a provider that interleaved two calls' fragments could not be
relayed to /v1/messages faithfully (neither provider does).

Money (`cost`, `billed`) is emitted as exact JSON numbers from the Decimals (orjson.Fragment), never through
float, so a client summing them gets the same figures as the invoice.
"""

import time
from dataclasses import dataclass
from decimal import Decimal

import orjson

from routing.types import FINISH_CONTENT_FILTER, FINISH_LENGTH, FINISH_TOOL_CALLS, Usage


@dataclass(frozen=True)
class RouteFacts:
    """What the client learns about the routing decision, in headers and bodies."""

    request_id: str
    tier: str
    endpoint: str
    upstream_model: str
    fallback_count: int
    route: str = "fixed"  # "smart; score=0.82; escalated=1" for an Auto request smart Auto scored


def routing_headers(facts: RouteFacts) -> list[tuple[str, str]]:
    return [
        ("x-request-id", facts.request_id),
        ("x-kiwiclaw-tier", facts.tier),
        ("x-kiwiclaw-model", facts.endpoint),
        ("x-kiwiclaw-fallback", str(facts.fallback_count)),
        ("x-kiwiclaw-route", facts.route),
    ]


def money_headers(cost: Decimal, billed: Decimal) -> list[tuple[str, str]]:
    return [("x-kiwiclaw-cost", _plain(cost)), ("x-kiwiclaw-billed", _plain(billed))]


def _plain(amount: Decimal) -> str:
    """Fixed-point text of a Decimal (never `1E-7`), so headers and JSON numbers parse everywhere."""
    return format(amount.normalize() if amount else Decimal("0"), "f")


def _money(amount: Decimal) -> orjson.Fragment:
    return orjson.Fragment(_plain(amount).encode())


def sse(data: dict | str, event: str | None = None) -> bytes:
    payload = data.encode() if isinstance(data, str) else orjson.dumps(data)
    if event:
        return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"
    return b"data: " + payload + b"\n\n"


# --- OpenAI ---

OPENAI_FINISH = {FINISH_LENGTH: "length", FINISH_CONTENT_FILTER: "content_filter",
                 FINISH_TOOL_CALLS: "tool_calls"}  # everything else: "stop"


def openai_usage(usage: Usage, cost: Decimal, billed: Decimal) -> dict:
    # OpenAI counts cached prompt tokens inside prompt_tokens; our Usage keeps them apart (routing.types).
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_estimated": usage.output_estimated,
        "cost": _money(cost),
        "billed": _money(billed),
    }


def openai_completion(facts: RouteFacts, text: str, finish_reason: str, usage: Usage, cost: Decimal,
                      billed: Decimal, tool_calls=()) -> bytes:
    message = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["content"] = text or None
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}} for c in tool_calls]
    return orjson.dumps({
        "id": f"chatcmpl-{facts.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": facts.upstream_model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": OPENAI_FINISH.get(finish_reason, "stop"),
        }],
        "usage": openai_usage(usage, cost, billed),
        "system_fingerprint": None,
    })


class OpenAIChunks:
    """Builds the `chat.completion.chunk` events of one stream."""

    def __init__(self, facts: RouteFacts, include_usage: bool):
        self.facts = facts
        self.include_usage = include_usage
        self.created = int(time.time())

    def _chunk(self, delta: dict, finish_reason: str | None) -> bytes:
        body = {
            "id": f"chatcmpl-{self.facts.request_id}",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.facts.upstream_model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            body["usage"] = None
        return sse(body)

    def first(self, text: str) -> bytes:
        return self._chunk({"role": "assistant", "content": text}, None)

    def first_tool(self, index: int, call_id: str, name: str) -> bytes:
        """The first chunk of an answer that starts with a tool call (no text: content null)."""
        return self._chunk({"role": "assistant", "content": None, "tool_calls": [self._start(index, call_id, name)]},
                           None)

    def delta(self, text: str) -> bytes:
        return self._chunk({"content": text}, None)

    @staticmethod
    def _start(index: int, call_id: str, name: str) -> dict:
        return {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}

    def tool_start(self, index: int, call_id: str, name: str) -> bytes:
        return self._chunk({"tool_calls": [self._start(index, call_id, name)]}, None)

    def tool_arguments(self, index: int, fragment: str) -> bytes:
        return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}, None)

    def finish(self, finish_reason: str) -> bytes:
        return self._chunk({}, OPENAI_FINISH.get(finish_reason, "stop"))

    def usage(self, usage: Usage, cost: Decimal, billed: Decimal) -> bytes:
        return sse({
            "id": f"chatcmpl-{self.facts.request_id}",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.facts.upstream_model,
            "choices": [],
            "usage": openai_usage(usage, cost, billed),
        })

    @staticmethod
    def error(payload: dict) -> bytes:
        # The openai SDK raises APIError for a stream event carrying `error`.
        return sse(payload)

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"


# --- Anthropic ---

ANTHROPIC_STOP = {FINISH_LENGTH: "max_tokens", FINISH_CONTENT_FILTER: "refusal",
                  FINISH_TOOL_CALLS: "tool_use"}  # everything else: end_turn


def tool_input(arguments: str) -> dict:
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"_unparsed_arguments": arguments}


def anthropic_stop(finish_reason: str, stop_sequence: str | None) -> tuple[str, str | None]:
    """(`stop_reason`, `stop_sequence`): "stop_sequence" with the sequence when the answering provider said one
    of the request's stop sequences ended the answer, whichever protocol it speaks."""
    if stop_sequence is not None:
        return "stop_sequence", stop_sequence
    return ANTHROPIC_STOP.get(finish_reason, "end_turn"), None


def anthropic_usage(usage: Usage, cost: Decimal | None = None, billed: Decimal | None = None) -> dict:
    body = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }
    if cost is not None:
        body["output_tokens_estimated"] = usage.output_estimated
        body["cost"] = _money(cost)
        body["billed"] = _money(billed or Decimal("0"))
    return body


def _anthropic_message(facts: RouteFacts, content: list, stop_reason: str | None, usage: dict,
                       stop_sequence: str | None = None) -> dict:
    return {
        "id": f"msg_{facts.request_id}",
        "type": "message",
        "role": "assistant",
        "model": facts.upstream_model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }


def anthropic_message(facts: RouteFacts, text: str, finish_reason: str, usage: Usage, cost: Decimal,
                      billed: Decimal, stop_sequence: str | None = None, tool_calls=()) -> bytes:
    stop_reason, stop_sequence = anthropic_stop(finish_reason, stop_sequence)
    content = [{"type": "text", "text": text}] if text or not tool_calls else []
    content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(c.arguments)}
                for c in tool_calls]
    return orjson.dumps(_anthropic_message(
        facts, content, stop_reason, anthropic_usage(usage, cost, billed), stop_sequence,
    ))


class AnthropicEvents:
    """Builds Anthropic's stream event sequence: message_start, then each content block (content_block_start,
    content_block_delta…, content_block_stop; a ping after the first start), message_delta (with usage),
    message_stop. Text opens a text block; a tool call a tool_use block (the open block is stopped first)."""

    __slots__ = ("facts", "block", "text_open", "tool_blocks")

    def __init__(self, facts: RouteFacts):
        self.facts = facts
        self.block = -1  # the index of the open (last started) block; -1 before the first
        self.text_open = False
        self.tool_blocks: dict[int, int] = {}  # tool call index -> its block index

    def first(self, text: str, input_tokens: int) -> bytes:
        start = _anthropic_message(self.facts, [], None, anthropic_usage(Usage(input_tokens=input_tokens)))
        self.block, self.text_open = 0, True
        return (
            sse({"type": "message_start", "message": start}, "message_start")
            + sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                  "content_block_start")
            + sse({"type": "ping"}, "ping")
            + (self.delta(text) if text else b"")
        )

    def first_tool(self, index: int, call_id: str, name: str, input_tokens: int) -> bytes:
        start = _anthropic_message(self.facts, [], None, anthropic_usage(Usage(input_tokens=input_tokens)))
        return sse({"type": "message_start", "message": start}, "message_start") + sse({"type": "ping"}, "ping") \
            + self.tool_start(index, call_id, name)

    def _stop_open(self) -> bytes:
        return sse({"type": "content_block_stop", "index": self.block}, "content_block_stop") if self.block >= 0 \
            else b""

    def delta(self, text: str) -> bytes:
        if self.text_open:
            return sse({"type": "content_block_delta", "index": self.block,
                        "delta": {"type": "text_delta", "text": text}}, "content_block_delta")
        opening = self._stop_open()
        self.block += 1
        self.text_open = True
        return opening + sse({"type": "content_block_start", "index": self.block,
                              "content_block": {"type": "text", "text": ""}}, "content_block_start") \
            + self.delta(text)

    def tool_start(self, index: int, call_id: str, name: str) -> bytes:
        opening = self._stop_open()
        self.block += 1
        self.text_open = False
        self.tool_blocks[index] = self.block
        return opening + sse({"type": "content_block_start", "index": self.block,
                              "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}}},
                             "content_block_start")

    def tool_arguments(self, index: int, fragment: str) -> bytes:
        return sse({"type": "content_block_delta", "index": self.tool_blocks.get(index, self.block),
                    "delta": {"type": "input_json_delta", "partial_json": fragment}}, "content_block_delta")

    def finish(self, finish_reason: str, usage: Usage, cost: Decimal, billed: Decimal,
               stop_sequence: str | None = None) -> bytes:
        stop_reason, stop_sequence = anthropic_stop(finish_reason, stop_sequence)
        opening = b""
        if self.block < 0:  # an answer with no content at all: one empty text block, as a whole answer has
            opening = self.delta("")
        return (
            opening + self._stop_open()
            + sse({"type": "message_delta",
                   "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                   "usage": anthropic_usage(usage, cost, billed)}, "message_delta")
            + sse({"type": "message_stop"}, "message_stop")
        )

    @staticmethod
    def error(payload: dict) -> bytes:
        return sse(payload, "error")
