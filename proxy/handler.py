"""The proxy's request flow, independent of the web framework: headers and body in, a `ProxyResponse` out.

    key (cached) → tenant active → parse → tier/model in plan → rate limits (Redis) → budget hold (Redis)
    → routing core (route_complete / route_stream) → answer in the caller's protocol
    → usage row (billing.usage_record, key api:<request id>) and token settle, after the answer.

The routing core runs in a task of its own (`_Call`), detached from the HTTP request, so a client that goes
away cannot cut the bookkeeping short: the stream is told to stop (`should_stop`), the core ends it with
`Done(cancelled)` carrying the tokens so far (estimated where the provider had not reported them), and the
usage row is written exactly once (usage_record is idempotent on its key).

The usage row is written after the answer, not before it. Its commit (a Postgres round trip waiting on the
WAL flush, plus a thread hop and the budget settle) was 4–5 ms of the ~10 ms the proxy added to a call; now
the client has the answer while the row is being written. What the answer says about money does not depend
on the row: the billed amount is `money.billed_amount(cost, the plan's markup)`, the same rule usage_record
applies, computed up front for the `x-kiwiclaw-billed` header and the final usage chunk. The trade-off: the
row lands a few milliseconds after the client has the answer, so a reader that queries the ledger the instant
a response arrives may not see it yet. The row is still written before the entry point's call returns
(`ProxyResponse.finished`: the raw ASGI entry and the Django views await it, shielded, after the last
byte), so a server that drains its requests on shutdown drains the bookkeeping too. Because the task is
detached, a client that disconnects — before its answer, mid-stream, or right after it — does not cancel
it (only a client gone before the answer leaves the entry point returning first, with the call finishing
in the background as before). A row that cannot be written (the database is down) is retried once and
otherwise logged with everything needed to replay it; the budget hold then lapses after its TTL.

Both the Django views (views.py) and the raw ASGI entry (asgi.py) call `handle`.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from billing import money
from billing.budget import BudgetExceeded, abudget_release, abudget_reserve
from routing.catalog import catalog_cached, catalog_get
from routing.cost import estimate_max_cost
from routing.errors import (
    AllEndpointsFailed,
    ModelNotAllowed,
    ProviderError,
    RequestInvalid,
    RoutingError,
    TierNotAllowed,
)
from routing.types import FINISH_ERROR, Done, Routed, TextDelta, Usage

from . import formatting as fmt
from .auth import KeyIdentity, aauthenticate_key
from .errors import ANTHROPIC, OPENAI, ProxyError, error_body, error_headers, error_payload
from .parsing import ParsedCall, parse_anthropic, parse_openai
from .ratelimit import arate_limit_settle, arate_limit_take

logger = logging.getLogger("proxy")

JSON = ("content-type", "application/json")
SSE_HEADERS = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"),
               ("x-accel-buffering", "no")]

# Calls still running after their client left; kept referenced so the event loop does not drop them.
_background: set[asyncio.Task] = set()


@dataclass
class ProxyResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    # The call's bookkeeping (usage row, token settle), still running when the answer is ready: the entry
    # point awaits it (shielded) after sending the last byte, so the row is written before its call returns.
    finished: asyncio.Task | None = None


def max_body_bytes() -> int:
    return int(getattr(settings, "PROXY_MAX_BODY_BYTES", 2 * 1024 * 1024))


def new_request_id() -> str:
    return uuid.uuid4().hex


def error_response(error: ProxyError, protocol: str, request_id: str) -> ProxyResponse:
    return ProxyResponse(error.status, error_headers(error) + [("x-request-id", request_id)],
                         error_body(error, protocol, request_id))


def _secret(headers: Mapping[str, str], protocol: str) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if protocol == ANTHROPIC:
        return headers.get("x-api-key") or None
    return None


async def authenticate(headers: Mapping[str, str], protocol: str) -> KeyIdentity:
    secret = _secret(headers, protocol)
    if not secret:
        hint = "`x-api-key` header or `Authorization: Bearer`" if protocol == ANTHROPIC else \
            "`Authorization: Bearer <key>` header"
        raise ProxyError("auth", f"No API key: send your KiwiClaw API key in the {hint}.")
    identity = await aauthenticate_key(secret)
    if identity is None:
        raise ProxyError("auth", "Incorrect or revoked API key. Create a key on the API keys page.")
    if not identity.tenant.is_active:
        raise ProxyError("permission", f"The tenant {identity.tenant.name} is suspended. Contact support.")
    return identity


def _routing_error(exc: RoutingError) -> ProxyError:
    if isinstance(exc, RequestInvalid):
        return ProxyError("invalid", exc.message)
    if isinstance(exc, TierNotAllowed | ModelNotAllowed):
        return ProxyError("permission", exc.message)
    if isinstance(exc, ProviderError):
        # Terminal request errors (the upstream refused this request itself, e.g. context too long).
        return ProxyError("invalid", f"The model refused the request: {exc.message}")
    if isinstance(exc, AllEndpointsFailed):
        tried = "; ".join(
            f"{a.endpoint}: {a.outcome}" + (f" ({a.error_kind})" if a.error_kind else "")
            for a in exc.attempts
        )
        message = exc.message + (f" Attempts: {tried}." if tried else "")
        return ProxyError("overloaded" if exc.all_breakers_open else "upstream_failed", message)
    return ProxyError("upstream_failed", exc.message)


def _check_plan(identity: KeyIdentity, call: ParsedCall) -> None:
    plan = identity.plan
    if call.tier is not None:
        if not plan.allows_tier(call.tier):
            raise ProxyError("permission", f"The {plan.name} plan does not include the {call.tier.upper()} tier.")
    elif not plan.api_models_allowed:
        raise ProxyError("permission", f"The {plan.name} plan only allows the models \"auto\" and \"max\" "
                                       f"(got {call.model!r}).")


def _facts(request_id: str, result) -> fmt.RouteFacts:
    return fmt.RouteFacts(request_id=request_id, tier=result.tier, endpoint=result.endpoint,
                          upstream_model=result.upstream_model, fallback_count=result.fallback_count,
                          route=result.smart.header if result.smart is not None else "fixed")


def _record_usage_sync(*, identity: KeyIdentity, request_id: str, result) -> Decimal:
    from billing.services import usage_record
    from routing.metering import usage_row

    try:
        row = usage_record(
            tenant=identity.tenant, source="api", key=f"api:{request_id}", user_id=identity.user_id,
            api_key_id=identity.key_id, **usage_row(result),
        )
    except (InterfaceError, OperationalError):
        # Runs on an executor thread outside Django's request cycle, which keeps its connection between calls
        # (a round trip cheaper than handing it back to the pool each time); a broken one is dropped here so
        # the next call on this thread opens a fresh one.
        connection.close()
        raise
    return row.billed


# Not thread-sensitive: concurrent requests write their rows on several threads (each with a pooled connection)
# instead of queueing behind one thread's commits.
_record_usage = sync_to_async(_record_usage_sync, thread_sensitive=False)

# A broken pooled connection fails the first try; usage_record is idempotent on its key, so a second try is
# safe even when the first one's commit went through unseen.
_RECORD_TRIES = 2


def _total_tokens(usage: Usage) -> int:
    return usage.input_tokens + usage.output_tokens + usage.cache_read_tokens + usage.cache_write_tokens


class _Call:
    """One routed call, run in its own task. Puts ("delta", text), ("facts", facts, ""), ("done", result,
    billed, unsent) or ("error", ProxyError) into `queue`; after "done" it writes the usage row."""

    def __init__(self, *, identity: KeyIdentity, call: ParsedCall, request_id: str, estimate: int):
        self.identity = identity
        self.call = call
        self.request_id = request_id
        self.estimate = estimate
        self.queue: asyncio.Queue = asyncio.Queue()
        self.client_gone = False
        self.started = False  # a text delta was produced: the budget hold now ends in a usage row
        self.task: asyncio.Task | None = None

    async def should_stop(self) -> bool:
        return self.client_gone

    def _billed(self, result) -> Decimal:
        """The billed amount usage_record will store: the same rule, on the same plan, computed now so the
        answer can carry it before the row is written."""
        return money.billed_amount(result.cost, self.identity.plan.markup_percent)

    async def _answer_then_record(self, result, unsent: bool) -> None:
        billed = self._billed(result)
        await self.queue.put(("done", result, billed, unsent))
        try:
            await self._record(result, billed)
        except Exception:
            # The answer is out; what it cost must not get lost silently: everything to replay the row.
            logger.exception("usage row api:%s NOT written (tenant %s, api key %s, endpoint %s, provider %s, "
                             "tier %s, usage %s, cost %s, billed %s)", self.request_id, self.identity.tenant.pk,
                             self.identity.key_id, result.endpoint, result.provider, result.tier, result.usage,
                             result.cost, billed)

    async def _record(self, result, billed: Decimal) -> None:
        for attempt in range(1, _RECORD_TRIES + 1):
            try:
                stored = await _record_usage(identity=self.identity, request_id=self.request_id, result=result)
                break
            except (InterfaceError, OperationalError):
                if attempt == _RECORD_TRIES:
                    raise
        if stored != billed:  # would mean the markup rule changed in one place only
            logger.error("usage row api:%s billed %s, but the answer said %s", self.request_id, stored, billed)
        try:
            await arate_limit_settle(self.identity, tokens=_total_tokens(result.usage) - self.estimate)
        except Exception:  # noqa: BLE001 - the answer is paid for; a missed TPM charge only loosens a limit
            logger.warning("rate-limit settle failed for %s", self.request_id, exc_info=True)

    async def _fail(self, error: ProxyError) -> None:
        try:
            await abudget_release(tenant=self.identity.tenant, key=f"api:{self.request_id}")
        finally:
            await self.queue.put(("error", error))

    async def run_complete(self):
        from routing.core import route_complete

        try:
            result = await route_complete(tenant=self.identity.tenant, tier=self.call.tier or "auto",
                                          request=self.call.request, model=self.call.endpoint,
                                          should_stop=self.should_stop)
        except RoutingError as exc:
            await self._fail(_routing_error(exc))
            return
        except Exception:
            logger.exception("proxy call %s failed", self.request_id)
            await self._fail(ProxyError("internal", f"Internal error (request {self.request_id})."))
            return
        await self._answer_then_record(result, True)

    async def run_stream(self):
        """Relays the core's stream. The response headers carry the routing facts, so text is held back until
        the core says which endpoint answers: its Routed event, yielded just before the first delta, releases
        it at once. An answer with no text at all has no Routed event: its facts come with Done."""
        from routing.core import route_stream

        facts_sent = False
        try:
            async for event in route_stream(tenant=self.identity.tenant, tier=self.call.tier or "auto",
                                            request=self.call.request, model=self.call.endpoint,
                                            should_stop=self.should_stop):
                if isinstance(event, TextDelta):  # always after Routed: the facts have gone out
                    self.started = True
                    await self.queue.put(("delta", event.text))
                elif isinstance(event, Done):
                    await self._answer_then_record(event.result, not facts_sent)
                    return
                elif isinstance(event, Routed) and not facts_sent:
                    facts_sent = True
                    await self.queue.put(("facts", _facts(self.request_id, event), ""))
        except RoutingError as exc:
            await self._fail(_routing_error(exc))
        except Exception:
            logger.exception("proxy stream %s failed", self.request_id)
            error = ProxyError("internal", f"Internal error (request {self.request_id}).")
            if self.started:
                await self.queue.put(("error", error))
            else:
                await self._fail(error)

    def start(self, coro) -> asyncio.Task:
        task = self.task = asyncio.get_running_loop().create_task(coro)
        _background.add(task)
        task.add_done_callback(_background.discard)
        return task

    async def next_item(self):
        """The next item of the call; a cancelled wait (the client left) tells the call to stop."""
        try:
            return await self.queue.get()
        except asyncio.CancelledError:
            self.client_gone = True
            raise


async def _admit(headers: Mapping[str, str], body: bytes, protocol: str, request_id: str):
    """Everything before the provider call. Returns (identity, call, estimated tokens) or raises ProxyError."""
    if len(body) > max_body_bytes():
        raise ProxyError("too_large", f"The request body is over the {max_body_bytes()} byte limit.")
    identity = await authenticate(headers, protocol)
    call = parse_anthropic(body) if protocol == ANTHROPIC else parse_openai(body)
    _check_plan(identity, call)
    estimate = call.estimated_input_tokens()
    decision = await arate_limit_take(identity, tokens=estimate)
    if decision.revoked:
        raise ProxyError("auth", "Incorrect or revoked API key. Create a key on the API keys page.")
    if not decision.allowed:
        raise ProxyError("rate_limited", f"Rate limit reached: {decision.limit}. Retry after "
                                         f"{decision.retry_after} s.", retry_after=decision.retry_after)
    # The catalog is usually in this process's memory; only a stale one needs the database (a thread hop).
    estimator = estimate_max_cost if catalog_cached() is not None else sync_to_async(estimate_max_cost)
    cost = estimator(tenant=identity.tenant, tier=call.tier or "auto", request=call.request)
    if not isinstance(cost, Decimal):
        cost = await cost
    try:
        await abudget_reserve(tenant=identity.tenant, key=f"api:{request_id}", cost=cost)
    except BudgetExceeded as exc:
        raise ProxyError("quota", exc.message) from None
    return identity, call, estimate


async def handle(protocol: str, headers: Mapping[str, str], body: bytes) -> ProxyResponse:
    """POST /v1/chat/completions (protocol "openai") or POST /v1/messages (protocol "anthropic")."""
    request_id = new_request_id()
    runner = None
    try:
        identity, call, estimate = await _admit(headers, body, protocol, request_id)
        runner = _Call(identity=identity, call=call, request_id=request_id, estimate=estimate)
        resp = await (_complete(runner, protocol) if not call.stream else _stream(runner, protocol))
    except ProxyError as exc:
        resp = error_response(exc, protocol, request_id)
    except Exception:
        logger.exception("proxy request %s failed", request_id)
        resp = error_response(ProxyError("internal", f"Internal error (request {request_id})."), protocol,
                              request_id)
    # An answer cut short upstream is still billed: its error response waits for the row like an answer does.
    resp.finished = runner.task if runner is not None else None
    return resp


async def _complete(runner: _Call, protocol: str) -> ProxyResponse:
    # The call runs in its own task: if the client goes away, it is told to stop but still writes its row.
    runner.start(runner.run_complete())
    item = await runner.next_item()
    if item[0] == "error":
        raise item[1]
    _, result, billed, _unsent = item
    facts = _facts(runner.request_id, result)
    if result.finish_reason == FINISH_ERROR:
        # The answer broke off upstream; the tokens it used are billed, the client gets a clear 502.
        raise ProxyError("upstream_failed", result.error or "The model stopped answering mid-way.")
    body_fn = fmt.anthropic_message if protocol == ANTHROPIC else fmt.openai_completion
    body = body_fn(facts, result.text, result.finish_reason, result.usage, result.cost, billed)
    headers = [JSON] + fmt.routing_headers(facts) + fmt.money_headers(result.cost, billed)
    return ProxyResponse(200, headers, body)


async def _stream(runner: _Call, protocol: str) -> ProxyResponse:
    runner.start(runner.run_stream())
    first = await runner.next_item()  # a client that leaves before the answer starts stops the call
    if first[0] == "error":
        raise first[1]
    if first[0] == "done":
        result = first[1]
        facts, first_text, pending = _facts(runner.request_id, result), result.text, first
    else:
        _, facts, first_text = first
        pending = None
    headers = SSE_HEADERS + fmt.routing_headers(facts)
    return ProxyResponse(200, headers, stream=_relay(runner, protocol, facts, first_text, pending))


async def _relay(runner: _Call, protocol: str, facts: fmt.RouteFacts, first_text: str, pending):
    """The answer's SSE events. Whatever the call has already queued goes out as one chunk: deltas that
    arrived together (a provider's TCP read often holds several) cost one ASGI send and one socket write, not
    one each; nothing waits to be batched, so a lone delta still goes out at once."""
    call = runner.call
    if protocol == ANTHROPIC:
        events = fmt.AnthropicEvents(facts)
        estimated_input = call.estimated_input_tokens()
        yield events.first(first_text, estimated_input)
    else:
        events = fmt.OpenAIChunks(facts, call.include_usage)
        yield events.first(first_text)
    queue = runner.queue
    try:
        while True:
            item = pending or await queue.get()
            pending = None
            out: list[bytes] = []
            while True:
                if _relay_item(runner, protocol, events, item, out):
                    yield b"".join(out)
                    return
                if queue.empty():
                    break
                item = queue.get_nowait()
            if out:
                yield b"".join(out)
    finally:
        # Normal end, client disconnect (CancelledError / GeneratorExit) alike: if the call is still
        # running, tell the core to stop; it then records the tokens so far.
        runner.client_gone = True


def _relay_item(runner: _Call, protocol: str, events, item, out: list[bytes]) -> bool:
    """Append one queue item's events to `out`; True when it ends the answer."""
    if item[0] == "delta":
        if item[1]:
            out.append(events.delta(item[1]))
        return False
    if item[0] == "done":
        _, result, billed, _unsent = item
        if result.finish_reason == FINISH_ERROR:
            error = ProxyError("upstream_failed", result.error or "The model stopped answering mid-way.")
            out.append(events.error(error_payload(error, protocol, runner.request_id)))
        elif protocol == ANTHROPIC:
            out.append(events.finish(result.finish_reason, result.usage, result.cost, billed))
        else:
            out.append(events.finish(result.finish_reason))
            if runner.call.include_usage:
                out.append(events.usage(result.usage, result.cost, billed))
            out.append(events.done())
        return True
    out.append(events.error(error_payload(item[1], protocol, runner.request_id)))
    return True


async def handle_models(headers: Mapping[str, str]) -> ProxyResponse:
    """GET /v1/models: the tiers (and, where the plan allows it, the catalog endpoints) this key may use."""
    request_id = new_request_id()
    try:
        identity = await authenticate(headers, OPENAI)
        plan = identity.plan
        data = [{"id": tier, "object": "model", "created": 0, "owned_by": "kiwiclaw"}
                for tier in ("auto", "max") if plan.allows_tier(tier)]
        if plan.api_models_allowed:
            catalog = catalog_cached() or await sync_to_async(catalog_get)()
            data += [{"id": e.slug, "object": "model", "created": 0, "owned_by": e.provider}
                     for e in catalog.endpoints.values() if e.enabled]
        return ProxyResponse(200, [JSON, ("x-request-id", request_id)],
                             orjson.dumps({"object": "list", "data": data}))
    except ProxyError as exc:
        return error_response(exc, OPENAI, request_id)
    except Exception:
        logger.exception("proxy request %s failed", request_id)
        return error_response(ProxyError("internal", f"Internal error (request {request_id})."), OPENAI,
                              request_id)
