"""Budgets: enforce a plan's hard monthly cap before a request is dispatched, also under concurrency.

Redis holds, per tenant, the billed spend of the current UTC month (`kc:budget:spend:<tenant>:<yyyymm>`, in
integer units of 1e-10 USD so it adds up exactly like the ledger) and the outstanding reservations
(`kc:budget:res:<tenant>` hash key → units, with `kc:budget:resexp:<tenant>` holding each reservation's
expiry so a crashed request's hold lapses). One Lua script checks and reserves atomically: a reservation is
refused when spend + outstanding reservations + this one would pass the cap, so two requests can never both
slip past the last dollar.

The ledger is the truth and Redis a cache of it: a missing spend counter is seeded from SUM(billed); each
usage row settles its reservation and adds its billed amount after commit; `budget_reconcile_all_tenants`
(Celery beat) rewrites counters that drifted (a process that died between commit and settle).

`cost` passed to `budget_reserve` is the request's estimated maximum *provider* cost (routing's
`estimate_max_cost`); the plan's markup is applied here, because the cap is in billed USD.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import redis
from django.conf import settings
from django.db.models import Sum

from infra.redis import Script, redis_async, redis_sync
from tenants.models import Plan, Tenant

from . import money
from .models import UsageRecord
from .months import month_bounds, month_start, next_month

logger = logging.getLogger(__name__)

SPEND_TTL_SECONDS = 40 * 24 * 3600  # outlives its month; a stale month's counter simply expires

# KEYS: spend, reservations hash, reservation expiries zset.
# ARGV: request key, units wanted, cap units, reservation ttl ms.
# Returns {status, spend, outstanding}: status 1 reserved, 0 refused, -1 spend unknown (caller seeds, retries).
RESERVE_LUA = """
local spend = redis.call('GET', KEYS[1])
if not spend then return {-1, 0, 0} end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms)
if #expired > 0 then
    redis.call('HDEL', KEYS[2], unpack(expired))
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms)
end
local outstanding = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do outstanding = outstanding + tonumber(v) end
local previous = redis.call('HGET', KEYS[2], ARGV[1])
if previous then outstanding = outstanding - tonumber(previous) end
local want = tonumber(ARGV[2])
if tonumber(spend) + outstanding + want > tonumber(ARGV[3]) then
    return {0, tonumber(spend), outstanding}
end
local ttl = tonumber(ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], now_ms + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return {1, tonumber(spend), outstanding}
"""

# KEYS: spend, reservations hash, expiries zset. ARGV: request key, billed units.
# Adds to the spend counter only when it exists: a missing counter is seeded from the ledger, which already
# holds this row (settle runs after commit).
SETTLE_LUA = """
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('INCRBY', KEYS[1], ARGV[2])
end
return -1
"""

RELEASE_LUA = """
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('HDEL', KEYS[2], ARGV[1])
"""

# Compare-and-set: rewrite the counter with the ledger's sum only if nothing settled since it was read.
RECONCILE_LUA = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
    return 1
end
return 0
"""


class BudgetExceeded(Exception):
    """The request would take the tenant past its plan's monthly cap. `str(exc)` is fit to show to people."""

    def __init__(self, message: str, *, tenant_id: int, cap: Decimal, spend: Decimal, reserved: Decimal,
                 resets_on: date):
        super().__init__(message)
        self.message = message
        self.tenant_id = tenant_id
        self.cap = cap
        self.spend = spend
        self.reserved = reserved
        self.resets_on = resets_on


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


def _reservation_ttl_ms() -> int:
    return int(getattr(settings, "BILLING_RESERVATION_TTL_SECONDS", 600) * 1000)


# --- Redis: infra's clients (one per process, one per event loop); scripts run by SHA ---------------------

_RESERVE = Script(RESERVE_LUA)
_SETTLE = Script(SETTLE_LUA)
_RELEASE = Script(RELEASE_LUA)
_RECONCILE = Script(RECONCILE_LUA)


# --- ledger reads used to seed and reconcile the cache ---------------------------------------------------

def _ledger_spend_filter(tenant_id: int, month: date):
    start, end = month_bounds(month)
    return UsageRecord.objects.filter(tenant_id=tenant_id, recorded_at__gte=start, recorded_at__lt=end)


def ledger_month_spend(*, tenant_id: int, month: date) -> Decimal:
    return _ledger_spend_filter(tenant_id, month).aggregate(s=Sum("billed"))["s"] or money.ZERO


async def aledger_month_spend(*, tenant_id: int, month: date) -> Decimal:
    return (await _ledger_spend_filter(tenant_id, month).aaggregate(s=Sum("billed")))["s"] or money.ZERO


# --- spend --------------------------------------------------------------------------------------------------

def cached_month_spend(*, tenant_id: int, month: date | None = None) -> Decimal:
    """Billed spend of the tenant in the month, from Redis, seeded from the ledger on a miss."""
    month = month or month_start()
    client = redis_sync()
    key = spend_key(tenant_id, month)
    raw = client.get(key)
    if raw is None:
        units = money.to_units(ledger_month_spend(tenant_id=tenant_id, month=month))
        # NX: a concurrent seed or settle that got there first wins; both reflect the ledger.
        pipe = client.pipeline(transaction=False)
        pipe.set(key, units, ex=SPEND_TTL_SECONDS, nx=True)
        pipe.get(key)
        raw = pipe.execute()[1]
    return money.from_units(int(raw))


async def acached_month_spend(*, tenant_id: int, month: date | None = None) -> Decimal:
    month = month or month_start()
    client = redis_async()
    key = spend_key(tenant_id, month)
    raw = await client.get(key)
    if raw is None:
        units = money.to_units(await aledger_month_spend(tenant_id=tenant_id, month=month))
        pipe = client.pipeline(transaction=False)
        pipe.set(key, units, ex=SPEND_TTL_SECONDS, nx=True)
        pipe.get(key)
        raw = (await pipe.execute())[1]
    return money.from_units(int(raw))


# --- reserve / release / settle -----------------------------------------------------------------------------

def _refusal(*, tenant: Tenant, plan: Plan, spend_units: int, outstanding_units: int, want: Decimal,
             month: date) -> BudgetExceeded:
    cap = plan.monthly_cap
    spend = money.from_units(spend_units)
    reserved = money.from_units(outstanding_units)
    resets_on = next_month(month)
    reset = f"{resets_on.day} {resets_on:%B}"
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


def _validate_request(key: str, cost) -> Decimal:
    if not key or not isinstance(key, str):
        raise ValueError("A reservation needs the request's usage key.")
    cost = money.require_decimal(cost, name="cost")
    if cost < 0:
        raise ValueError("A reservation cannot be negative.")
    return cost


def budget_reserve(*, tenant: Tenant, key: str, cost: Decimal) -> None:
    """Hold the request's estimated maximum provider cost (billed at the plan's markup) against the cap.

    Raises BudgetExceeded when the hold would pass the cap; nothing is reserved then. A plan without a cap
    reserves nothing. Reserving the same key again replaces its hold. The hold ends when `usage_record` is
    written under the same key, on `budget_release`, or after BILLING_RESERVATION_TTL_SECONDS.
    """
    cost = _validate_request(key, cost)
    plan = tenant.plan
    if plan.monthly_cap is None:
        return
    want = money.billed_amount(cost, plan.markup_percent)
    month = month_start()
    keys = _keys(tenant.pk, month)
    args = [key, money.to_units(want), money.to_units(plan.monthly_cap), _reservation_ttl_ms()]
    status, spend_units, outstanding_units = _RESERVE.run(keys.as_list(), args)
    if status == -1:
        cached_month_spend(tenant_id=tenant.pk, month=month)
        status, spend_units, outstanding_units = _RESERVE.run(keys.as_list(), args)
    if status != 1:
        raise _refusal(tenant=tenant, plan=plan, spend_units=spend_units, outstanding_units=outstanding_units,
                       want=want, month=month)


async def abudget_reserve(*, tenant: Tenant, key: str, cost: Decimal) -> None:
    """Async twin of `budget_reserve` for the proxy's event loop."""
    cost = _validate_request(key, cost)
    plan = tenant.plan if Tenant.plan.is_cached(tenant) else await Plan.objects.aget(pk=tenant.plan_id)
    if plan.monthly_cap is None:
        return
    want = money.billed_amount(cost, plan.markup_percent)
    month = month_start()
    keys = _keys(tenant.pk, month)
    args = [key, money.to_units(want), money.to_units(plan.monthly_cap), _reservation_ttl_ms()]
    status, spend_units, outstanding_units = await _RESERVE.arun(keys.as_list(), args)
    if status == -1:
        await acached_month_spend(tenant_id=tenant.pk, month=month)
        status, spend_units, outstanding_units = await _RESERVE.arun(keys.as_list(), args)
    if status != 1:
        raise _refusal(tenant=tenant, plan=plan, spend_units=spend_units, outstanding_units=outstanding_units,
                       want=want, month=month)


def budget_release(*, tenant: Tenant, key: str) -> None:
    """Drop a hold: the request failed and nothing is charged. Releasing an unknown key is a no-op.

    A Redis failure here is logged, not raised: the hold lapses after its TTL by itself (and a restarted Redis
    has lost it already), so the failed request's own error is what its caller should see."""
    try:
        _RELEASE.run(_keys(tenant.pk, month_start()).as_list(), [key])
    except (redis.RedisError, OSError):
        logger.warning("budget release failed for %s; the hold lapses after its TTL", key, exc_info=True)


async def abudget_release(*, tenant: Tenant, key: str) -> None:
    try:
        await _RELEASE.arun(_keys(tenant.pk, month_start()).as_list(), [key])
    except (redis.RedisError, OSError):
        logger.warning("budget release failed for %s; the hold lapses after its TTL", key, exc_info=True)


def budget_settle(*, tenant_id: int, key: str, billed: Decimal, recorded_at: datetime) -> None:
    """Called by `usage_record` after commit: end the hold and count the billed amount in its month.

    A Redis failure here is logged, not raised: the row is in the ledger, and reconciliation repairs the cache.
    """
    keys = _keys(tenant_id, month_start(recorded_at))
    try:
        _SETTLE.run(keys.as_list(), [key, money.to_units(billed)])
    except (redis.RedisError, OSError):
        logger.exception("budget settle failed for %s; the reconcile task will repair tenant %s", key, tenant_id)


def budget_reconcile_all_tenants(*, month: date | None = None) -> int:
    """Rewrite every cached spend counter of the month that disagrees with the ledger. Returns how many changed.

    Reads each counter before summing the ledger and writes only if the counter is unchanged since, so a row
    settled meanwhile is never lost (that counter is retried on the next run).
    """
    month = month or month_start()
    client = redis_sync()
    keys = list(client.scan_iter(match=f"kc:budget:spend:*:{month:%Y%m}", count=1000))
    if not keys:
        return 0
    before = client.mget(keys)
    tenant_ids = [int(k.split(":")[3]) for k in keys]
    start, end = month_bounds(month)
    sums = dict(
        UsageRecord.objects.filter(tenant_id__in=tenant_ids, recorded_at__gte=start, recorded_at__lt=end)
        .values("tenant_id").annotate(s=Sum("billed")).values_list("tenant_id", "s")
    )
    changed = 0
    for key, tenant_id, old in zip(keys, tenant_ids, before, strict=True):
        if old is None:
            continue
        truth = money.to_units(sums.get(tenant_id) or money.ZERO)
        if int(old) != truth:
            changed += _RECONCILE.run([key], [old, truth, SPEND_TTL_SECONDS])
            logger.warning("budget counter %s drifted: %s units cached, %s in the ledger", key, int(old), truth)
    return changed
