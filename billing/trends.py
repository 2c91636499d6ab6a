"""Finance over time: month-by-month figures across a range of months, overall and per workspace, and the tier
mix (Auto, escalated to MAX, MAX) per month. Reads only; cross-tenant reads end in `_all_tenants`.

Money figures come from the invoice rows the rollup keeps (a month's provider cost and billed usage per workspace:
small, indexed by month), so a year of trends costs about what one overview does. Void invoices still count
here: their usage happened; the invoiced total leaves them out, and credit notes are netted from it. The tier mix
is counted from the ledger; a closed month's mix never changes, so it is cached per month.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from tenants.models import Tenant

from . import money
from .models import CreditNote, Invoice, UsageRecord
from .months import month_bounds, month_start, next_month, previous_month
from .selectors import (
    _mix_totals,
    _with_savings,
    last_rollup_all_tenants,
    read_through,
    routing_mix_all_tenants,
    routing_mix_totals_all_tenants,
)

MAX_MONTHS = 36
DEFAULT_MONTHS = 12
TOP_WORKSPACES = 50
CLOSED_MIX_CACHE_SECONDS = 7 * 24 * 3600


def months_between(start: date, end: date) -> list[date]:
    months, month = [], start
    while month <= end:
        months.append(month)
        month = next_month(month)
    return months


def default_range(*, months: int = DEFAULT_MONTHS) -> tuple[date, date]:
    end = start = month_start()
    for _ in range(months - 1):
        start = previous_month(start)
    return start, end


def change_percent(now: Decimal, before: Decimal | None) -> Decimal | None:
    """Month-over-month change in percent, one decimal; None without a previous month or from zero."""
    if before is None or not before:
        return None
    return money.share_percent(now - before, before)


def _with_changes(rows: list[dict], keys=("billed", "margin", "cost")) -> list[dict]:
    previous = None
    for row in rows:
        for key in keys:
            row[f"{key}_change"] = change_percent(row[key], previous[key] if previous else None)
        previous = row
    return rows


def finance_trend_all_tenants(*, start: date, end: date, credit_notes: bool = True) -> list[dict]:
    """One row per month of [start, end], every month present (zeros where nothing was invoiced): workspaces
    invoiced, requests, provider cost, billed usage, margin and its share, the invoiced total without void
    invoices, credit notes of the month's invoices (a second query; `credit_notes=False` leaves them at zero, for
    the overview's chart), and each money figure's change on the month before."""
    by_month = {r["month"]: r for r in Invoice.objects.filter(month__gte=start, month__lte=end).values("month")
                .annotate(workspaces=Count("id"), requests=Sum("request_count"), cost=Sum("usage_cost"),
                          billed=Sum("usage_billed"), total=Sum("total", filter=Q(void__isnull=True)))
                .order_by()}
    credited = dict(CreditNote.objects.filter(invoice__month__gte=start, invoice__month__lte=end)
                    .values_list("invoice__month").annotate(t=Sum("total")).order_by()) if credit_notes else {}
    rows = []
    for month in months_between(start, end):
        r = by_month.get(month, {})
        cost, billed = r.get("cost") or money.ZERO, r.get("billed") or money.ZERO
        rows.append({
            "month": month, "workspaces": r.get("workspaces") or 0, "requests": r.get("requests") or 0,
            "cost": cost, "billed": billed, "margin": billed - cost,
            "margin_percent": money.share_percent(billed - cost, billed),
            "total": r.get("total") or money.ZERO, "credited": -(credited.get(month) or money.ZERO),
        })
    return _with_changes(rows)


def finance_trend_all_tenants_cached(*, start: date, end: date, rolled_up_at=None) -> list[dict]:
    """`finance_trend_all_tenants` without credit notes (the overview's chart), cached until the current month's
    next rollup when `rolled_up_at` (its last one) is given. Without Redis it is computed."""
    key = f"billing:trend:{start:%Y-%m}:{end:%Y-%m}:{rolled_up_at.isoformat()}" if rolled_up_at else None
    return read_through(key, CLOSED_MIX_CACHE_SECONDS,
                        lambda: finance_trend_all_tenants(start=start, end=end, credit_notes=False), what="trend")


def trend_totals(rows: list[dict]) -> dict:
    totals = {key: sum((r[key] for r in rows), money.ZERO) for key in ("cost", "billed", "margin", "total",
                                                                       "credited")}
    totals["requests"] = sum(r["requests"] for r in rows)
    totals["margin_percent"] = money.share_percent(totals["margin"], totals["billed"])
    return totals


def workspace_trends_all_tenants(*, start: date, end: date, limit: int = TOP_WORKSPACES) -> tuple[list[dict], int]:
    """The workspaces billed most over the range, each with its billed usage per month, its range totals (cost,
    billed, margin) and the change of its last month on the one before. Returns (rows, workspaces in the range)."""
    months = months_between(start, end)
    per_tenant: dict[int, dict] = {}
    for r in (Invoice.objects.filter(month__gte=start, month__lte=end)
              .values_list("tenant_id", "tenant__name", "month", "usage_cost", "usage_billed").order_by()):
        tenant_id, name, month, cost, billed = r
        row = per_tenant.setdefault(tenant_id, {"tenant_id": tenant_id, "name": name, "by_month": {},
                                                "cost": money.ZERO, "billed": money.ZERO})
        row["by_month"][month] = billed
        row["cost"] += cost
        row["billed"] += billed
    rows = sorted(per_tenant.values(), key=lambda r: (-r["billed"], r["name"]))[:limit]
    for row in rows:
        row["margin"] = row["billed"] - row["cost"]
        row["months"] = [row["by_month"].get(m) for m in months]
        last = row["by_month"].get(months[-1], money.ZERO)
        before = row["by_month"].get(months[-2]) if len(months) > 1 else None
        row["last_change"] = change_percent(last, before)
    return rows, len(per_tenant)


def tenant_trend(*, tenant: Tenant, start: date, end: date) -> list[dict]:
    """One workspace month by month: cost, billed and margin from its invoices, with changes, and its tier mix
    from the ledger (one indexed range scan of its rows)."""
    invoices = {i["month"]: i for i in Invoice.objects.filter(tenant=tenant, month__gte=start, month__lte=end)
                .values("month", "usage_cost", "usage_billed", "total", "status", "number")}
    range_start, range_end = month_bounds(start)[0], month_bounds(end)[1]
    mixes = {r["month"].date(): _with_savings(r) for r in UsageRecord.objects
             .filter(tenant=tenant, recorded_at__gte=range_start, recorded_at__lt=range_end)
             .annotate(month=TruncMonth("recorded_at", tzinfo=None)).values("month").annotate(**_mix_totals())
             .order_by()}
    rows = []
    for month in months_between(start, end):
        i = invoices.get(month, {})
        cost, billed = i.get("usage_cost") or money.ZERO, i.get("usage_billed") or money.ZERO
        rows.append({"month": month, "cost": cost, "billed": billed, "margin": billed - cost,
                     "invoiced": month in invoices, "mix": mixes.get(month)})
    return _with_changes(rows)


def _mix_of_month_all_tenants(month: date) -> dict:
    """Every workspace's tier mix in one month: the current month from the overview's per-rollup cache, a
    closed month from its own cache (it never changes), else one grouped pass over the month's ledger rows."""
    if month == month_start():
        return routing_mix_totals_all_tenants(
            routing_mix_all_tenants(month=month, rolled_up_at=last_rollup_all_tenants(month=month)))
    start, end = month_bounds(month)

    def compute() -> dict:
        return _with_savings(UsageRecord.objects.filter(recorded_at__gte=start, recorded_at__lt=end)
                             .aggregate(**_mix_totals()))

    closed = end + timedelta(days=1) < timezone.now()  # late rows have all landed: the mix never changes again
    return read_through(f"billing:mix-month:{month:%Y-%m}" if closed else None, CLOSED_MIX_CACHE_SECONDS, compute,
                        what="trend mix")


def tier_mix_by_month_all_tenants(*, start: date, end: date) -> list[dict]:
    return [{"month": m, "mix": _mix_of_month_all_tenants(m)} for m in months_between(start, end)]
