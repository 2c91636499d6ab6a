"""Budgets: enforce a plan's hard monthly cap before a request is dispatched, also under concurrency.

Redis holds, per tenant, the billed spend of the current UTC month (`kc:budget:spend:<tenant>:<yyyymm>`, in
integer units of 1e-10 USD so it adds up exactly like the ledger) and the outstanding reservations
(`kc:budget:res:<tenant>` hash key → units, with `kc:budget:resexp:<tenant>` holding each reservation's
expiry so a crashed request's hold lapses). One Lua script checks and reserves atomically: a reservation is
refused when spend + outstanding reservations + this one would pass the cap, so two requests can never both
slip past the last dollar.

The ledger is the truth and Redis a cache of it: a missing spend counter is seeded from SUM(billed); each
usage row settles its reservation and adds its billed amount after commit; `budget_reconcile_all_tenants`
(billing/reconcile.py, Celery beat) rewrites counters that drifted (a process that died between commit and settle).

`cost` passed to `budget_reserve` is the request's estimated maximum *provider* cost (routing's
`estimate_max_cost`); the plan's markup is applied here, because the cap is in billed USD.

Finer limits (`SpendLimit`: a member's or an API key's monthly limit) are reserved by the same script in the
same round trip as the cap: a request is refused by the first scope it would take past its limit, and the
refusal names it. Their counters (`kc:budget:lspend:<kind>:<tenant>:<subject>:<version>:<yyyymm>`) are seeded
from the ledger like the workspace's; the version changes whenever an admin edits the limit.

Spend watchers (`budget_watch_register`; the alerts app) hear when a workspace's spend reaches their mark
(`budget_watch_set`), from the settle script itself: no extra round trip per usage row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Sum

from infra.redis import Script, arun_scripts, redis_async, redis_sync
from tenants.models import Plan, Tenant

from . import budget_lua, money
from .models import UsageRecord
from .months import month_bounds, month_start, next_month
from .spend_limits import SpendLimit, key_spend_limit, member_spend_limit  # noqa: F401 (the budget's API)

logger = logging.getLogger(__name__)

SPEND_TTL_SECONDS = 40 * 24 * 3600  # outlives its month; a stale month's counter simply expires
HOLD_RECORD_EXTRA_MS = 3600 * 1000  # a hold record outlives its reservations: a long answer still settles
WATCH_CLAIM_SECONDS = 60  # a watcher that died lets its claim lapse (budget_lua.SETTLE)
WATCH_TTL_SECONDS = 15 * 60  # a mark is looked at again at least this often (a cap or threshold changed)


class BudgetExceeded(Exception):
    """The request would pass a monthly limit: the workspace's cap (`limit` "workspace"), its member's limit
    ("member") or its API key's ("key"). `str(exc)` is fit to show to people and names the limit."""

    def __init__(self, message: str, *, tenant_id: int, cap: Decimal, spend: Decimal, reserved: Decimal,
                 resets_on: date, limit: str = "workspace"):
        super().__init__(message)
        self.message, self.tenant_id, self.limit, self.resets_on = message, tenant_id, limit, resets_on
        self.cap, self.spend, self.reserved = cap, spend, reserved


@dataclass(frozen=True)
class _Keys:
    spend: str
    reservations: str
    expiries: str

    def as_list(self) -> list[str]:
        return [self.spend, self.reservations, self.expiries]


# --- time and keys ---------------------------------------------------------------------------------------

def spend_key(tenant_id: int, month: date) -> str:
    return f"kc:budget:spend:{tenant_id}:{month:%Y%m}"


def _keys(tenant_id: int, month: date) -> _Keys:
    return _Keys(spend_key(tenant_id, month), f"kc:budget:res:{tenant_id}", f"kc:budget:resexp:{tenant_id}")


def _hold_key(tenant_id: int, key: str) -> str:
    return f"kc:budget:hold:{tenant_id}:{key}"


def watch_key(tenant_id: int, month: date) -> str:
    return f"kc:budget:watch:{tenant_id}:{month:%Y%m}"


def _reservation_ttl_ms() -> int:
    return int(getattr(settings, "BILLING_RESERVATION_TTL_SECONDS", 600) * 1000)


# --- Redis: infra's clients (one per process, one per event loop); scripts run by SHA ---------------------

_RESERVE = Script(budget_lua.RESERVE)
_SETTLE = Script(budget_lua.SETTLE)
_RELEASE = Script(budget_lua.RELEASE)
_WATCH_SET = Script(budget_lua.WATCH_SET)


# --- ledger reads used to seed and reconcile the cache ---------------------------------------------------

def _ledger_spend_filter(tenant_id: int, month: date):
    start, end = month_bounds(month)
    return UsageRecord.objects.filter(tenant_id=tenant_id, recorded_at__gte=start, recorded_at__lt=end)


def ledger_month_spend(*, tenant_id: int, month: date) -> Decimal:
    return _ledger_spend_filter(tenant_id, month).aggregate(s=Sum("billed"))["s"] or money.ZERO


async def aledger_month_spend(*, tenant_id: int, month: date) -> Decimal:
    return (await _ledger_spend_filter(tenant_id, month).aaggregate(s=Sum("billed")))["s"] or money.ZERO


# --- spend --------------------------------------------------------------------------------------------------

def _seed(client, key: str, units: int):
    # NX: a concurrent seed or settle that got there first wins; both reflect the ledger.
    pipe = client.pipeline(transaction=False)
    pipe.set(key, units, ex=SPEND_TTL_SECONDS, nx=True)
    pipe.get(key)
    return pipe


def cached_month_spend(*, tenant_id: int, month: date | None = None) -> Decimal:
    """Billed spend of the tenant in the month, from Redis, seeded from the ledger on a miss."""
    month = month or month_start()
    client = redis_sync()
    key = spend_key(tenant_id, month)
    raw = client.get(key)
    if raw is None:
        units = money.to_units(ledger_month_spend(tenant_id=tenant_id, month=month))
        raw = _seed(client, key, units).execute()[1]
    return money.from_units(int(raw))


async def acached_month_spend(*, tenant_id: int, month: date | None = None) -> Decimal:
    month = month or month_start()
    client = redis_async()
    key = spend_key(tenant_id, month)
    raw = await client.get(key)
    if raw is None:
        units = money.to_units(await aledger_month_spend(tenant_id=tenant_id, month=month))
        raw = (await _seed(client, key, units).execute())[1]
    return money.from_units(int(raw))


def limit_month_spend(limit: SpendLimit, *, month: date | None = None) -> Decimal:
    """Billed spend counted against a member's or key's limit this month, from Redis, seeded on a miss."""
    month = month or month_start()
    client = redis_sync()
    key = limit.keys(month)[0]
    raw = client.get(key)
    if raw is None:
        units = money.to_units(limit.ledger(_ledger_spend_filter(limit.tenant_id, month)).aggregate(
            s=Sum("billed"))["s"] or money.ZERO)
        raw = _seed(client, key, units).execute()[1]
    return money.from_units(int(raw))


async def _alimit_month_spend(limit: SpendLimit, month: date) -> None:
    client = redis_async()
    rows = limit.ledger(_ledger_spend_filter(limit.tenant_id, month))
    units = money.to_units((await rows.aaggregate(s=Sum("billed")))["s"] or money.ZERO)
    await _seed(client, limit.keys(month)[0], units).execute()


# --- reserve / release / settle -----------------------------------------------------------------------------

def _resets(month: date) -> tuple[date, str]:
    return next_month(month), f"{next_month(month).day} {next_month(month):%B}"


def _refusal(*, tenant: Tenant, plan: Plan, spend_units: int, outstanding_units: int, want: Decimal,
             month: date) -> BudgetExceeded:
    cap = plan.monthly_cap
    spend = money.from_units(spend_units)
    reserved = money.from_units(outstanding_units)
    resets_on, reset = _resets(month)
    if spend >= cap:
        message = (f"{tenant.name} has reached its {money.format_usd(cap)} monthly spending cap on the "
                   f"{plan.name} plan. Usage resets on {reset}; an admin can upgrade the plan.")
    else:
        message = (f"{tenant.name} is too close to its {money.format_usd(cap)} monthly spending cap on the "
                   f"{plan.name} plan for this request (up to {money.format_usd(want)}); "
                   f"{money.format_usd(max(money.ZERO, cap - spend - reserved))} is left this month. Usage resets "
                   f"on {reset}; an admin can upgrade the plan.")
    return BudgetExceeded(message, tenant_id=tenant.pk, cap=cap, spend=spend, reserved=reserved,
                          resets_on=resets_on)


def _limit_refusal(*, limit: SpendLimit, spend_units: int, outstanding_units: int, want: Decimal,
                   month: date) -> BudgetExceeded:
    spend, reserved = money.from_units(spend_units), money.from_units(outstanding_units)
    resets_on, reset = _resets(month)
    return BudgetExceeded(limit.refusal_text(spend=spend, reserved=reserved, want=want, reset=reset),
                          tenant_id=limit.tenant_id, cap=limit.limit, spend=spend, reserved=reserved,
                          resets_on=resets_on, limit=limit.kind)


def _validate_request(key: str, cost) -> Decimal:
    if not key or not isinstance(key, str):
        raise ValueError("A reservation needs the request's usage key.")
    cost = money.require_decimal(cost, name="cost")
    if cost < 0:
        raise ValueError("A reservation cannot be negative.")
    return cost


@dataclass
class _Hold:
    """One reservation to make: its scopes (None for the workspace's cap, else a SpendLimit), keys and args."""

    tenant: Tenant
    plan: Plan
    want: Decimal
    month: date
    scopes: list[SpendLimit | None]
    keys: list[str]
    args: list

    def refusal(self, index: int, spend_units: int, outstanding_units: int) -> BudgetExceeded:
        scope = self.scopes[index]
        if scope is None:
            return _refusal(tenant=self.tenant, plan=self.plan, spend_units=spend_units,
                            outstanding_units=outstanding_units, want=self.want, month=self.month)
        return _limit_refusal(limit=scope, spend_units=spend_units, outstanding_units=outstanding_units,
                              want=self.want, month=self.month)


def _hold(tenant: Tenant, plan: Plan, key: str, cost, limits: Sequence[SpendLimit | None]) -> _Hold | None:
    cost = _validate_request(key, cost)
    limits = [limit for limit in limits if limit is not None]
    if plan.monthly_cap is None and not limits:
        return None
    want = money.billed_amount(cost, plan.markup_percent)
    month = month_start()
    scopes: list[SpendLimit | None] = ([None] if plan.monthly_cap is not None else []) + limits
    keys, caps, extra = [_hold_key(tenant.pk, key)], [], []
    for scope in scopes:
        scope_keys = _keys(tenant.pk, month) if scope is None else _Keys(*scope.keys(month))
        keys += scope_keys.as_list()
        caps.append(money.to_units(plan.monthly_cap if scope is None else scope.limit))
        if scope is not None:
            extra.append(scope_keys.as_list())
    ttl = _reservation_ttl_ms()
    args = [key, money.to_units(want), ttl, ttl + HOLD_RECORD_EXTRA_MS, json.dumps(extra) if extra else "", *caps]
    return _Hold(tenant, plan, want, month, scopes, keys, args)


def budget_reserve(*, tenant: Tenant, key: str, cost: Decimal, limits: Sequence[SpendLimit | None] = ()) -> None:
    """Hold the request's estimated maximum provider cost (billed at the plan's markup) against the cap and
    against each of `limits` (the member's and the API key's; None entries are skipped), all or nothing.

    Raises BudgetExceeded naming the first limit the hold would pass; nothing is reserved then. Without a cap
    and without limits nothing is reserved. Reserving the same key again replaces its hold. The hold ends when
    `usage_record` is written under the same key, on `budget_release`, or after BILLING_RESERVATION_TTL_SECONDS.
    """
    if (hold := _hold(tenant, tenant.plan, key, cost, limits)) is None:
        return
    for _ in range(len(hold.scopes) + 1):
        status, index, spend_units, outstanding_units = _RESERVE.run(hold.keys, hold.args)
        if status != -1:
            break
        scope = hold.scopes[index]  # its counter is unknown: seed it from the ledger, then try again
        if scope is None:
            cached_month_spend(tenant_id=tenant.pk, month=hold.month)
        else:
            limit_month_spend(scope, month=hold.month)
    if status != 1:
        raise hold.refusal(index, spend_units, outstanding_units)


async def abudget_reserve(*, tenant: Tenant, key: str, cost: Decimal,
                          limits: Sequence[SpendLimit | None] = ()) -> None:
    """Async twin of `budget_reserve` for the proxy's event loop."""
    plan = tenant.plan if Tenant.plan.is_cached(tenant) else await Plan.objects.aget(pk=tenant.plan_id)
    hold = _hold(tenant, plan, key, cost, limits)
    if hold is None:
        return
    for _ in range(len(hold.scopes) + 1):
        status, index, spend_units, outstanding_units = await _RESERVE.arun(hold.keys, hold.args)
        if status != -1:
            break
        scope = hold.scopes[index]
        if scope is None:
            await acached_month_spend(tenant_id=tenant.pk, month=hold.month)
        else:
            await _alimit_month_spend(scope, hold.month)
    if status != 1:
        raise hold.refusal(index, spend_units, outstanding_units)


def _release_keys(tenant_id: int, key: str) -> list[str]:
    keys = _keys(tenant_id, month_start())
    return [keys.reservations, keys.expiries, _hold_key(tenant_id, key)]


def budget_release(*, tenant: Tenant, key: str) -> None:
    """Drop a hold (in every scope it took): the request failed and nothing is charged. Releasing an unknown
    key is a no-op.

    A Redis failure here is logged, not raised: the hold lapses after its TTL by itself (and a restarted Redis
    has lost it already), so the failed request's own error is what its caller should see."""
    try:
        _RELEASE.run(_release_keys(tenant.pk, key), [key])
    except (redis.RedisError, OSError):
        logger.warning("budget release failed for %s; the hold lapses after its TTL", key, exc_info=True)


async def abudget_release(*, tenant: Tenant, key: str) -> None:
    try:
        await _RELEASE.arun(_release_keys(tenant.pk, key), [key])
    except (redis.RedisError, OSError):
        logger.warning("budget release failed for %s; the hold lapses after its TTL", key, exc_info=True)


def _settle_call(*, tenant_id: int, key: str, billed: Decimal, recorded_at: datetime):
    """The settle script's call for one row, and the month it counts in."""
    month = month_start(recorded_at)
    keys = _keys(tenant_id, month).as_list() + [_hold_key(tenant_id, key), watch_key(tenant_id, month)]
    return month, (_SETTLE, keys, [key, money.to_units(billed), WATCH_CLAIM_SECONDS])


def budget_settle(*, tenant_id: int, key: str, billed: Decimal, recorded_at: datetime) -> None:
    """Called by `usage_record` after commit: end the hold (in every scope it took) and count the billed amount
    in its month; tell the spend watchers when the workspace's spend reached their mark.

    A Redis failure here is logged, not raised: the row is in the ledger, and reconciliation repairs the cache.
    """
    month, (script, keys, args) = _settle_call(tenant_id=tenant_id, key=key, billed=billed, recorded_at=recorded_at)
    try:
        _spend, watched = script.run(keys, args)
    except (redis.RedisError, OSError):
        logger.exception("budget settle failed for %s; the reconcile task will repair tenant %s", key, tenant_id)
        return
    if watched:
        _tell_watchers(tenant_id, month)


async def abudget_settle(rows: Sequence[UsageRecord]) -> None:
    """`budget_settle` for usage rows just committed, from an event loop: one round trip for all of them."""
    calls = [_settle_call(tenant_id=r.tenant_id, key=r.key, billed=r.billed, recorded_at=r.recorded_at)
             for r in rows]
    try:
        replies = await arun_scripts(*(call for _, call in calls))
    except (redis.RedisError, OSError):
        logger.exception("budget settle failed for %s; the reconcile task will repair their tenants",
                         ", ".join(r.key for r in rows))
        return
    for row, (month, _), (_spend, watched) in zip(rows, calls, replies, strict=True):
        if watched:
            await sync_to_async(_tell_watchers)(row.tenant_id, month)


# --- spend watchers ----------------------------------------------------------------------------------------

_watchers: list[Callable[[int, date], None]] = []


def _tell_watchers(tenant_id: int, month: date) -> None:
    for watcher in _watchers:
        try:
            watcher(tenant_id, month)
        except Exception:
            logger.exception("spend watcher %r failed for tenant %s", watcher, tenant_id)


def budget_watch_register(watcher: Callable[[int, date], None]) -> None:
    """`watcher(tenant_id, month)` is called after a usage row's commit that took the workspace's spend to the
    mark set by `budget_watch_set` (or found none). Quick (enqueue a task); it ends by setting the next mark."""
    if watcher not in _watchers:
        _watchers.append(watcher)


def budget_watch_set(*, tenant_id: int, month: date, mark: Decimal | None) -> bool:
    """Be told again once the spend reaches `mark` (None: not again this month, until WATCH_TTL_SECONDS pass).
    Returns True when the spend is already there (a row settled meanwhile): look again now."""
    units = -1 if mark is None else money.to_units(mark)
    return bool(_WATCH_SET.run([watch_key(tenant_id, month), spend_key(tenant_id, month)],
                               [units, WATCH_TTL_SECONDS]))


def budget_watch_reset(*, tenant_id: int, month: date | None = None) -> None:
    """Forget the mark (thresholds or cap changed); the next row tells the watchers. Best effort (marks lapse)."""
    try:
        redis_sync().delete(watch_key(tenant_id, month or month_start()))
    except (redis.RedisError, OSError):
        logger.warning("could not reset the spend watch of tenant %s", tenant_id, exc_info=True)
