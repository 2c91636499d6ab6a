"""Dispatch: the one fallback loop. Walks the policy's chain, calls providers through their adapters, and
turns whatever happens into text deltas and exactly one final `Done(result)`.

Rules (see docs/architecture.md, "Routing core"):
- A fallback-able error before the first text delta moves on to the next endpoint at once (no backoff: a user
  waiting on a fallback must not wait out a failing provider).
- A provider that accepts the call and then stays silent is a failure before text too, at the endpoint's own
  deadline, not the socket's: a JSON call must have its answer within ROUTING_FIRST_BYTE_TIMEOUT (httpx's read
  timeout for the call, aiohttp's sock_read underneath), a stream its first text delta within
  ROUTING_FIRST_DELTA_TIMEOUT (asyncio.timeout: opening events and pings do not count).
- Only the last endpoint is retried, with exponential backoff and jitter, never sooner than `retry-after`,
  and never past the overall deadline (ROUTING_DEADLINE_SECONDS, counted until the answer starts).
- A terminal request error (bad request, content filter) fails at once, without walking the chain.
- A tool call's start is a delta like text: fallback ends there too.
- After the first delta has been passed on there is no fallback: an error ends the answer with
  finish_reason "error", keeping the partial text and its (possibly estimated) usage. A stream silent for
  ROUTING_STREAM_IDLE_TIMEOUT after it started ends so too (httpx's read timeout for the streamed call).
- Every call and skip is an Attempt in the decision log.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from django.conf import settings

from .breaker import breaker_acquire, breaker_is_clean, breaker_record_failure, breaker_record_success
from .catalog import EndpointInfo
from .cost import estimate_prompt_tokens, estimate_tokens, price_usage
from .errors import (
    FALLBACK_KINDS,
    KIND_BAD_REQUEST,
    KIND_CONNECTION,
    KIND_CONTENT_FILTER,
    KIND_CONTEXT_LENGTH,
    KIND_TIMEOUT,
    TERMINAL_KINDS,
    AllEndpointsFailed,
    ProviderError,
)
from .policy import RoutePlan
from .types import (
    FINISH_CANCELLED,
    FINISH_ERROR,
    FINISH_STOP,
    OUTCOME_CANCELLED,
    OUTCOME_ERROR,
    OUTCOME_OK,
    OUTCOME_SKIPPED,
    Attempt,
    ChatRequest,
    Done,
    Finish,
    Routed,
    RouteResult,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageUpdate,
)
from .upstream import provider_events

# Failures that say nothing about the endpoint's health (the request was at fault) do not count.
_NOT_BREAKER_KINDS = frozenset({KIND_BAD_REQUEST, KIND_CONTEXT_LENGTH, KIND_CONTENT_FILTER})


def backoff_delay(retry: int, retry_after: float | None) -> float:
    """Exponential backoff with jitter (half to full of base·2^retry, capped), never less than retry-after."""
    base = min(settings.ROUTING_BACKOFF_MAX_SECONDS, settings.ROUTING_BACKOFF_BASE_SECONDS * (2**retry))
    delay = base * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _ms(start: float, end: float) -> float:
    return (end - start) * 1000


class _Walk:
    """One dispatch's walk down the chain: the request, the deadline, and what the walk has tried so far."""

    __slots__ = ("plan", "request", "max_tokens", "requested_tier", "should_stop", "health", "loop", "deadline",
                 "attempts", "failed_endpoints", "last_error")

    def __init__(self, *, plan: RoutePlan, request: ChatRequest, max_tokens: int, requested_tier: str,
                 should_stop: Callable[[], Awaitable[bool]] | None, health: dict[str, dict] | None):
        self.plan, self.request, self.max_tokens = plan, request, max_tokens
        self.requested_tier, self.should_stop, self.health = requested_tier, should_stop, health
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + settings.ROUTING_DEADLINE_SECONDS
        self.attempts: list[Attempt] = list(plan.skipped)
        self.failed_endpoints: set[str] = set()
        self.last_error: ProviderError | None = None

    def fallback_count(self, endpoint: EndpointInfo) -> int:
        return len(self.failed_endpoints - {endpoint.slug})


class _Answer:
    """One call of one endpoint: its entry in the decision log and what it has produced so far."""

    __slots__ = ("endpoint", "attempt", "events", "started", "parts", "usage", "finish", "stop_sequence", "error",
                 "tools")

    def __init__(self, walk: _Walk, endpoint: EndpointInfo):
        self.endpoint = endpoint
        self.attempt = Attempt(endpoint=endpoint.slug, provider=endpoint.provider, outcome=OUTCOME_ERROR)
        walk.attempts.append(self.attempt)
        self.started = time.perf_counter()
        self.events = provider_events(endpoint, walk.request, max_tokens=walk.max_tokens)
        self.parts: list[str] = []
        self.usage: Usage | None = None
        self.finish: str | None = None
        self.stop_sequence: str | None = None
        self.error: ProviderError | None = None  # an error after the answer started: it ends the answer
        self.tools: list[tuple[str, str, list[str]]] | None = None  # (id, name, argument fragments) per tool call

    def tool_event(self, event) -> None:
        if type(event) is ToolCallStart:
            if self.tools is None:
                self.tools = []
            self.tools.append((event.id, event.name, []))
        elif self.tools is not None and event.index < len(self.tools):
            self.tools[event.index][2].append(event.arguments)


async def dispatch(
    *,
    plan: RoutePlan,
    request: ChatRequest,
    max_tokens: int,
    requested_tier: str,  # "" for a model named explicitly
    should_stop: Callable[[], Awaitable[bool]] | None = None,
    health: dict[str, dict] | None = None,
) -> AsyncIterator:
    """Yields TextDelta and UsageUpdate events and ends with exactly one Done(result). Before the first text
    delta, failure raises AllEndpointsFailed (or the terminal ProviderError) instead.

    `health` is the breaker state read the plan was made from; a success at an endpoint it showed clean (and
    that did not fail during this call) skips the breaker reset (breaker.breaker_is_clean)."""
    walk = _Walk(plan=plan, request=request, max_tokens=max_tokens, requested_tier=requested_tier,
                 should_stop=should_stop, health=health)
    last_index = len(plan.chain) - 1
    for index, endpoint in enumerate(plan.chain):
        if endpoint.slug in plan.half_open and not await breaker_acquire(endpoint.slug):
            walk.attempts.append(Attempt(endpoint=endpoint.slug, provider=endpoint.provider,
                                         outcome=OUTCOME_SKIPPED,
                                         detail="circuit half-open: trial taken by another request"))
            continue
        retry = 0
        while True:
            answer = _Answer(walk, endpoint)
            try:
                first = await _first_delta(walk, answer)
                if first is not None:
                    yield Routed(tier=plan.tier, endpoint=endpoint.slug, provider=endpoint.provider,
                                 upstream_model=endpoint.upstream_model,
                                 fallback_count=walk.fallback_count(endpoint), smart=plan.smart)
                    yield first
            except (ProviderError, TimeoutError) as exc:
                delay = await _failed_before_text(walk, answer, exc, retry=retry, last=index == last_index)
                if delay is None:
                    break  # next endpoint at once
                await asyncio.sleep(delay)
                retry += 1
                continue
            # The answer has started (or finished empty): from here on there is no fallback.
            rest = _stream_rest(walk, answer)
            try:
                async for event in rest:
                    yield event
            finally:
                await rest.aclose()
            await _record_outcome(walk, answer)
            yield _result(walk, answer)
            return
    raise _all_failed(walk)


async def _first_delta(walk: _Walk, answer: _Answer) -> TextDelta | ToolCallStart | None:
    """Read the endpoint's events up to its first text delta and return it, or None for an answer that finished
    without any text (e.g. max_tokens 0-ish). Until the first delta the routing deadline and, for a stream, the
    endpoint's first-delta deadline bound the wait; after it, the stream's idle timeout does. Raises
    ProviderError, or TimeoutError at either deadline."""
    events = answer.events
    deadline = walk.deadline
    if walk.request.stream:
        deadline = min(deadline, walk.loop.time() + settings.ROUTING_FIRST_DELTA_TIMEOUT)
    while True:
        if walk.loop.time() >= deadline:
            raise TimeoutError
        async with asyncio.timeout_at(deadline):
            event = await anext(events, None)
        if event is None:
            raise ProviderError(KIND_CONNECTION, "The provider ended the answer without any text.")
        if isinstance(event, TextDelta):
            answer.attempt.ttft_ms = _ms(answer.started, time.perf_counter())
            answer.parts.append(event.text)
            return event
        if isinstance(event, ToolCallStart):
            answer.attempt.ttft_ms = _ms(answer.started, time.perf_counter())
            answer.tool_event(event)
            return event
        if isinstance(event, UsageUpdate):
            answer.usage = event.usage
        elif isinstance(event, Finish):
            answer.finish, answer.stop_sequence = event.finish_reason, event.stop_sequence
            return None


async def _failed_before_text(walk: _Walk, answer: _Answer, exc: ProviderError | TimeoutError, *, retry: int,
                              last: bool) -> float | None:
    """Log a failure before the answer's first text, and decide: raise it (a terminal request error, or one no
    fallback can help), retry this endpoint after the returned delay, or move on (None)."""
    await answer.events.aclose()
    if isinstance(exc, TimeoutError):
        if walk.loop.time() >= walk.deadline:
            exc = ProviderError(KIND_TIMEOUT, "No answer before the routing deadline.")
        else:
            exc = ProviderError(KIND_TIMEOUT, f"No text within {settings.ROUTING_FIRST_DELTA_TIMEOUT:g} s "
                                              "(ROUTING_FIRST_DELTA_TIMEOUT).")
    endpoint, attempt = answer.endpoint, answer.attempt
    attempt.latency_ms = _ms(answer.started, time.perf_counter())
    attempt.error_kind = exc.kind
    attempt.detail = exc.message[:300]
    walk.last_error = exc
    walk.failed_endpoints.add(endpoint.slug)
    if exc.kind not in _NOT_BREAKER_KINDS:
        await breaker_record_failure(endpoint.slug)
    if exc.kind in TERMINAL_KINDS:
        exc.attempts = walk.attempts
        raise exc from None
    if exc.kind not in FALLBACK_KINDS:
        raise exc from None
    return _retry_delay(walk, attempt, exc, retry=retry, last=last)


def _retry_delay(walk: _Walk, attempt: Attempt, exc: ProviderError, *, retry: int, last: bool) -> float | None:
    """How long to wait before trying the endpoint again, or None to move on: only the last endpoint is retried,
    for a retryable error, a limited number of times, and never past the deadline."""
    if not (last and exc.retryable and retry < settings.ROUTING_RETRY_ATTEMPTS):
        return None
    delay = backoff_delay(retry, exc.retry_after)
    if walk.loop.time() + delay < walk.deadline:
        attempt.detail += f" (retrying in {delay:.2f}s)"
        return delay
    attempt.detail += f" (no retry: waiting {delay:.2f}s would pass the deadline)"
    return None


async def _stream_rest(walk: _Walk, answer: _Answer) -> AsyncIterator:
    """Relay the rest of a started answer until it finishes, is stopped (`should_stop`, checked before each
    event) or breaks off (`answer.error`). Closing it, or its end, closes the upstream response: a stopped
    answer stops generating."""
    events, should_stop = answer.events, walk.should_stop
    try:
        while answer.finish is None:
            if should_stop is not None and await should_stop():
                answer.finish = FINISH_CANCELLED
                break
            event = await anext(events, None)
            if event is None:
                raise ProviderError(KIND_CONNECTION, "The stream ended early.")
            if isinstance(event, TextDelta):
                answer.parts.append(event.text)
                yield event
            elif isinstance(event, UsageUpdate):
                answer.usage = event.usage
                yield event
            elif isinstance(event, ToolCallStart | ToolCallDelta):
                answer.tool_event(event)
                yield event
            elif isinstance(event, Finish):
                answer.finish, answer.stop_sequence = event.finish_reason, event.stop_sequence
    except ProviderError as exc:
        if exc.kind == KIND_TIMEOUT and walk.request.stream:  # the read timeout of a started stream: silence
            idle = settings.ROUTING_STREAM_IDLE_TIMEOUT
            exc = ProviderError(KIND_TIMEOUT, f"The provider sent nothing for {idle:g} s (ROUTING_STREAM_IDLE_TIMEOUT).")
        answer.error = exc
    finally:
        await events.aclose()


async def _record_outcome(walk: _Walk, answer: _Answer) -> None:
    """Log how a started answer ended, and tell the breaker: a break-off counts as a failure; a success at an
    endpoint that failed during this call, or that the plan's health read did not show clean, resets it."""
    endpoint, attempt, error = answer.endpoint, answer.attempt, answer.error
    attempt.latency_ms = _ms(answer.started, time.perf_counter())
    if error is not None:
        attempt.error_kind = error.kind
        attempt.detail = error.message[:300]
        if error.kind not in _NOT_BREAKER_KINDS:
            await breaker_record_failure(endpoint.slug)
    elif answer.finish == FINISH_CANCELLED:
        attempt.outcome = OUTCOME_CANCELLED
    else:
        attempt.outcome = OUTCOME_OK
        if endpoint.slug in walk.failed_endpoints or not breaker_is_clean((walk.health or {}).get(endpoint.slug)):
            await breaker_record_success(endpoint.slug)


def _result(walk: _Walk, answer: _Answer) -> Done:
    """The one Done of a started answer: its text, the usage to bill (estimated where the provider had not
    reported it) priced at the endpoint that answered, and the decision log."""
    plan, endpoint, error = walk.plan, answer.endpoint, answer.error
    text = "".join(answer.parts)
    calls = () if answer.tools is None else tuple(
        ToolCall(id=call_id, name=name, arguments="".join(parts)) for call_id, name, parts in answer.tools)
    final_usage = _complete_usage(answer.usage, request=walk.request,
                                  text=text + "".join(c.name + c.arguments for c in calls),
                                  cut_short=error is not None or answer.finish == FINISH_CANCELLED)
    return Done(RouteResult(
        text=text, finish_reason=FINISH_ERROR if error is not None else answer.finish, tier=plan.tier,
        requested_tier=walk.requested_tier, smart=plan.smart, endpoint=endpoint.slug, provider=endpoint.provider,
        upstream_model=endpoint.upstream_model, usage=final_usage, attempts=walk.attempts,
        fallback_count=walk.fallback_count(endpoint), reason=plan.reason,
        cost=price_usage(prices=endpoint.prices, usage=final_usage), prices=endpoint.prices,
        error=("The answer was interrupted: " + error.message) if error is not None else None,
        stop_sequence=answer.stop_sequence if error is None and answer.finish == FINISH_STOP else None,
        tool_calls=calls,
    ))


def _all_failed(walk: _Walk) -> AllEndpointsFailed:
    """The error of a walk that found no endpoint to answer."""
    attempts, last_error = walk.attempts, walk.last_error
    all_open = bool(attempts) and all(a.outcome == OUTCOME_SKIPPED for a in attempts)
    kind = f" (last error: {last_error.kind})" if last_error else ""
    return AllEndpointsFailed(
        attempts,
        all_breakers_open=all_open,
        message=None if all_open else f"No model could answer right now{kind}. Please try again.",
    )


def _complete_usage(usage: Usage | None, *, request: ChatRequest, text: str, cut_short: bool) -> Usage:
    """The usage to bill. When the answer was cut short (error, stop) the provider may not have reported the
    output tokens yet (Anthropic sends them at the end; OpenAI-compatible providers send everything at the
    end): those come from the named estimator, and the usage is flagged estimated."""
    if usage is not None and (usage.output_tokens or not cut_short):
        return usage  # the provider reported its own output count: bill that
    return Usage(
        input_tokens=usage.input_tokens if usage is not None else estimate_prompt_tokens(request),
        output_tokens=estimate_tokens(text),
        cache_read_tokens=usage.cache_read_tokens if usage is not None else 0,
        cache_write_tokens=usage.cache_write_tokens if usage is not None else 0,
        output_estimated=True,
    )
