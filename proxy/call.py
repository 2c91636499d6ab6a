"""One routed call of the proxy, run in a task of its own (`Call`), detached from the HTTP request.

A client that goes away cannot cut the bookkeeping short: the stream is told to stop (`should_stop`), the core
ends it with `Done(cancelled)` carrying the tokens so far (estimated where the provider had not reported them),
and the usage row is written exactly once (`routing.metering.arecord` is idempotent on its key).

The usage row is written after the answer, not before it: its commit (a Postgres round trip waiting on the
WAL flush, and the budget settle) was the largest part of what the proxy added to a call (bench/README.md,
"Proxy API"); now the client has the answer while the row is being written. What the answer says about money
does not depend on the row: the billed amount is `money.billed_amount(cost, the plan's markup)`, the same rule usage_record
applies, computed up front for the `x-kiwiclaw-billed` header and the final usage chunk. The trade-off: the
row lands a few milliseconds after the client has the answer, so a reader that queries the ledger the instant
a response arrives may not see it yet. The row is still written before the entry point's call returns
(`ProxyResponse.finished`: the raw ASGI entry and the Django views await it, shielded, after the last
byte), so a server that drains its requests on shutdown drains the bookkeeping too. Because the task is
detached, a client that disconnects — before its answer, mid-stream, or right after it — does not cancel
it (only a client gone before the answer leaves the entry point returning first, with the call finishing
in the background as before). A row that cannot be written (the database is down, or the pooled connection
died with a restart) goes to the outbox at once (`metering.record_later`: fsynced to the local spool, shared
through Redis), and the outbox writes it under the same key once the database answers — exactly one row, with the
real tokens. Only if the outbox cannot keep it either is it logged with everything needed to replay it.
The row is written on the event loop (`metering.arecord`, billing/usage_writer.py: the loop's own connection,
no thread hop), and rows of calls ending within a couple of milliseconds share one transaction.

The money goes through `routing.metering`, the one metering path the chat's turns take too: the handler holds
(`metering.ahold`), a call records its row (`metering.arecord`) or releases the hold (`metering.release`).
"""

import asyncio
import logging
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.db import InterfaceError, OperationalError

from billing import money
from routing import metering
from routing.errors import (
    AllEndpointsFailed,
    ModelNotAllowed,
    ProviderError,
    RequestInvalid,
    RoutingError,
    TierNotAllowed,
)
from routing.types import Done, Routed, TextDelta, ToolCallDelta, ToolCallStart, Usage

from . import formatting as fmt
from .auth import KeyIdentity
from .errors import ProxyError
from .parsing import ParsedCall
from .ratelimit import arate_limit_settle

logger = logging.getLogger("proxy")

# Calls still running after their client left; kept referenced so the event loop does not drop them.
_background: set[asyncio.Task] = set()


def usage_key(request_id: str) -> str:
    """The key a call's hold and usage row share."""
    return f"api:{request_id}"


def routing_error(exc: RoutingError) -> ProxyError:
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


def route_facts(request_id: str, result) -> fmt.RouteFacts:
    return fmt.RouteFacts(request_id=request_id, tier=result.tier, endpoint=result.endpoint,
                          upstream_model=result.upstream_model, fallback_count=result.fallback_count,
                          route=result.smart.header if result.smart is not None else "fixed")


# A failed call's release runs on a thread too: one Redis call, on the failure path only, so the one sync
# `metering.release` serves the chat and the proxy alike.
_release = sync_to_async(metering.release, thread_sensitive=False)

# A failed write goes to the outbox at once rather than being retried here: a retry while the database is down
# waits the pool's whole timeout with the row only in this process's memory, while the outbox makes it durable
# in a millisecond and its replayer writes it within about a second of the database's return (the usage key
# makes a write whose commit went through unseen harmless: the outbox's write is then a no-op).
_record_later = sync_to_async(metering.record_later, thread_sensitive=False)


def _total_tokens(usage: Usage) -> int:
    return usage.input_tokens + usage.output_tokens + usage.cache_read_tokens + usage.cache_write_tokens


class Call:
    """One routed call, run in its own task. Puts ("delta", text), ("tool", index, id, name), ("args", index,
    fragment), ("facts", facts, ""), ("done", result, billed, unsent) or ("error", ProxyError) into `queue`; after
    "done" it writes the usage row."""

    def __init__(self, *, identity: KeyIdentity, call: ParsedCall, request_id: str, estimate: int,
                 health: dict | None = None):
        self.identity = identity
        self.health = health  # the breaker states read at admission, or None (the core reads them)
        self.call = call
        self.request_id = request_id
        self.estimate = estimate
        self.queue: asyncio.Queue = asyncio.Queue()
        self.client_gone = False
        self.started = False  # a text or tool-call delta was produced: the budget hold now ends in a usage row
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
        try:
            row = await metering.arecord(tenant=self.identity.tenant, source="api", key=usage_key(self.request_id),
                                         user_id=self.identity.user_id, api_key_id=self.identity.key_id,
                                         result=result, end_user=self.call.end_user)
            stored = row.billed if row is not None else Decimal("0")
        except (InterfaceError, OperationalError) as exc:
            await _record_later(tenant=self.identity.tenant, source="api", key=usage_key(self.request_id),
                                user_id=self.identity.user_id, api_key_id=self.identity.key_id, result=result,
                                end_user=self.call.end_user)
            logger.warning("usage row api:%s kept in the outbox: the database is unavailable (%s)",
                           self.request_id, exc)
            stored = billed
        if stored != billed:  # would mean the markup rule changed in one place only
            logger.error("usage row api:%s billed %s, but the answer said %s", self.request_id, stored, billed)
        try:
            await arate_limit_settle(self.identity, tokens=_total_tokens(result.usage) - self.estimate)
        except Exception:  # noqa: BLE001 - the answer is paid for; a missed TPM charge only loosens a limit
            logger.warning("rate-limit settle failed for %s", self.request_id, exc_info=True)

    async def _fail(self, error: ProxyError) -> None:
        try:
            await _release(tenant=self.identity.tenant, key=usage_key(self.request_id))
        finally:
            await self.queue.put(("error", error))

    async def run_complete(self):
        from routing.core import route_complete

        try:
            result = await route_complete(tenant=self.identity.tenant, tier=self.call.tier or "auto",
                                          request=self.call.request, model=self.call.endpoint,
                                          should_stop=self.should_stop, health=self.health)
        except RoutingError as exc:
            await self._fail(routing_error(exc))
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
                                            should_stop=self.should_stop, health=self.health):
                if isinstance(event, TextDelta):  # always after Routed: the facts have gone out
                    self.started = True
                    await self.queue.put(("delta", event.text))
                elif isinstance(event, ToolCallDelta):
                    await self.queue.put(("args", event.index, event.arguments))
                elif isinstance(event, ToolCallStart):
                    self.started = True
                    await self.queue.put(("tool", event.index, event.id, event.name))
                elif isinstance(event, Done):
                    await self._answer_then_record(event.result, not facts_sent)
                    return
                elif isinstance(event, Routed) and not facts_sent:
                    facts_sent = True
                    await self.queue.put(("facts", route_facts(self.request_id, event), ""))
        except RoutingError as exc:
            await self._fail(routing_error(exc))
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
