"""Budget counters put right: Redis caches the month's billed spend (billing/budget.py), the ledger is the truth.
A process that died between a row's commit and its settle leaves a counter short; Celery beat runs
`budget_reconcile_all_tenants` (billing/tasks.py) to rewrite every counter that disagrees with the ledger."""

from __future__ import annotations

import logging
from datetime import date

from django.db.models import Sum

from infra.redis import Script, redis_sync

from . import budget_lua, money, spend_limits
from .budget import SPEND_TTL_SECONDS
from .models import UsageRecord
from .months import month_bounds, month_start

logger = logging.getLogger("billing.budget")

_RECONCILE = Script(budget_lua.RECONCILE)


def budget_reconcile_all_tenants(*, month: date | None = None) -> int:
    """Rewrite every cached spend counter of the month (workspaces, members, keys) that disagrees with the ledger.
    Returns how many changed.

    Reads each counter before summing the ledger and writes only if the counter is unchanged since, so a row
    settled meanwhile is never lost (that counter is retried on the next run).
    """
    month = month or month_start()
    changed = spend_limits.limit_counters_reconcile(month=month, ttl_seconds=SPEND_TTL_SECONDS)
    client = redis_sync()
    if not (keys := list(client.scan_iter(match=f"kc:budget:spend:*:{month:%Y%m}", count=1000))):
        return changed
    before = client.mget(keys)
    tenant_ids = [int(k.split(":")[3]) for k in keys]
    start, end = month_bounds(month)
    sums = dict(
        UsageRecord.objects.filter(tenant_id__in=tenant_ids, recorded_at__gte=start, recorded_at__lt=end)
        .values("tenant_id").annotate(s=Sum("billed")).values_list("tenant_id", "s")
    )
    for key, tenant_id, old in zip(keys, tenant_ids, before, strict=True):
        if old is None:
            continue
        truth = money.to_units(sums.get(tenant_id) or money.ZERO)
        if int(old) != truth:
            changed += _RECONCILE.run([key], [old, truth, SPEND_TTL_SECONDS])
            logger.warning("budget counter %s drifted: %s units cached, %s in the ledger", key, int(old), truth)
    return changed
