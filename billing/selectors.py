"""Reads for billing. Tenant reads take the tenant; cross-tenant reads (finance) end in `_all_tenants`."""

from __future__ import annotations

import logging
from datetime import date, datetime
from decimal import Decimal

import redis
from django.core.cache import cache
from django.db.models import Count, DecimalField, F, Func, Q, QuerySet, Sum
from django.db.models.functions import TruncDay

from tenants.models import ApiKey, Tenant, User

from . import money
from .budget import cached_month_spend
from .models import CreditNote, Invoice, UsageRecord
from .months import month_bounds, month_start

logger = logging.getLogger(__name__)

# A month's routing mix is cached per rollup; a rollup runs every few minutes, so this only bounds a stalled one.
MIX_CACHE_SECONDS = 24 * 3600

_TOKENS = F("input_tokens") + F("output_tokens") + F("cache_read_tokens") + F("cache_write_tokens")


def _usage_totals() -> dict:
    # The two sums over row expressions come first: once an aggregate is named "input_tokens" or "billed",
    # later expressions in the same annotate() would refer to that aggregate instead of the column.
    return {
        "tokens": Sum(_TOKENS),
        "margin": Sum(F("billed") - F("cost")),
        "requests": Count("id"),
        "estimated": Count("id", filter=Q(output_estimated=True)),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cache_read_tokens": Sum("cache_read_tokens"),
        "cache_write_tokens": Sum("cache_write_tokens"),
        "cost": Sum("cost"),
        "billed": Sum("billed"),
    }


# --- spend ---------------------------------------------------------------------------------------------------

def tenant_month_spend(*, tenant: Tenant) -> Decimal:
    """Billed USD this UTC month, from the budget cache (seeded from the ledger on a miss)."""
    return cached_month_spend(tenant_id=tenant.pk)


def tenant_budget_status(*, tenant: Tenant) -> dict | None:
    """Spend against the plan's cap for the banner; None when the plan has no cap."""
    cap = tenant.plan.monthly_cap
    if not cap:
        return None
    spend = tenant_month_spend(tenant=tenant)
    return {"spend": spend, "cap": cap, "share": spend / cap, "plan": tenant.plan}


# --- a tenant's usage ----------------------------------------------------------------------------------------

def usage_list(*, tenant: Tenant, month: date | None = None, user_id: int | None = None,
               end_user: str | None = None) -> QuerySet[UsageRecord]:
    """The tenant's ledger rows in a month, optionally only one member's, and/or only those an API client sent
    for one of the tenant's end users (`end_user`, as sent: OpenAI `user`, Anthropic `metadata.user_id`)."""
    start, end = month_bounds(month or month_start())
    rows = UsageRecord.objects.filter(tenant=tenant, recorded_at__gte=start, recorded_at__lt=end)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    if end_user is not None:
        rows = rows.filter(end_user=end_user)
    return rows


def usage_totals(*, tenant: Tenant, month: date | None = None, user_id: int | None = None,
                 end_user: str | None = None) -> dict:
    totals = usage_list(tenant=tenant, month=month, user_id=user_id, end_user=end_user).aggregate(**_usage_totals())
    return {k: (v if v is not None else (money.ZERO if k in ("cost", "billed", "margin") else 0))
            for k, v in totals.items()}


def usage_by_model(*, tenant: Tenant, month: date | None = None, user_id: int | None = None,
                   end_user: str | None = None) -> QuerySet:
    return (usage_list(tenant=tenant, month=month, user_id=user_id, end_user=end_user)
            .values("endpoint_slug", "provider").annotate(**_usage_totals()).order_by("-billed", "endpoint_slug"))


def usage_by_day(*, tenant: Tenant, month: date | None = None, user_id: int | None = None,
                 end_user: str | None = None) -> QuerySet:
    return (usage_list(tenant=tenant, month=month, user_id=user_id, end_user=end_user)
            .annotate(day=TruncDay("recorded_at")).values("day").annotate(**_usage_totals()).order_by("day"))


def usage_by_day_and_model(*, tenant: Tenant, month: date | None = None) -> QuerySet:
    return (usage_list(tenant=tenant, month=month).annotate(day=TruncDay("recorded_at"))
            .values("day", "endpoint_slug", "provider").annotate(**_usage_totals())
            .order_by("day", "endpoint_slug", "provider"))


def usage_export_rows(*, tenant: Tenant, month: date | None = None, end_user: str | None = None) -> list[dict]:
    """The tenant's month grouped by UTC day, model, member, API key and end-user id, for its CSV export: each
    row with the member's and the key's labels (deleted ones by id), its token sums and billed amount."""
    rows = list(usage_list(tenant=tenant, month=month, end_user=end_user).annotate(day=TruncDay("recorded_at"))
                .values("day", "endpoint_slug", "provider", "user_id", "api_key_id", "end_user")
                .annotate(**_usage_totals())
                .order_by("day", "endpoint_slug", "provider", "user_id", "api_key_id", "end_user"))
    users = User.objects.in_bulk({r["user_id"] for r in rows if r["user_id"] is not None})
    keys = ApiKey.objects.filter(tenant=tenant).in_bulk({r["api_key_id"] for r in rows if r["api_key_id"]})
    for row in rows:
        user, key = users.get(row["user_id"]), keys.get(row["api_key_id"])
        row["member"] = user.email if user else (f"deleted user #{row['user_id']}" if row["user_id"] else "")
        row["api_key"] = (f"{key.name} ({key.prefix}…)" if key
                          else (f"deleted key #{row['api_key_id']}" if row["api_key_id"] else ""))
    return rows


def usage_by_member(*, tenant: Tenant, month: date | None = None, end_user: str | None = None) -> list[dict]:
    """Per acting user; users since deleted still appear, by id (the ledger keeps no foreign key)."""
    rows = list(usage_list(tenant=tenant, month=month, end_user=end_user).values("user_id").annotate(**_usage_totals())
                .order_by("-billed", "user_id"))
    users = User.objects.in_bulk([r["user_id"] for r in rows if r["user_id"] is not None])
    for row in rows:
        user = users.get(row["user_id"])
        row["label"] = user.display_name if user else ("No user" if row["user_id"] is None
                                                       else f"Deleted user #{row['user_id']}")
        row["email"] = user.email if user else ""
    return rows


def usage_by_api_key(*, tenant: Tenant, month: date | None = None, end_user: str | None = None) -> list[dict]:
    """Per API key (chat usage has none); revoked and deleted keys still appear."""
    rows = list(usage_list(tenant=tenant, month=month, end_user=end_user).filter(api_key_id__isnull=False)
                .values("api_key_id").annotate(**_usage_totals()).order_by("-billed", "api_key_id"))
    keys = ApiKey.objects.filter(tenant=tenant).in_bulk([r["api_key_id"] for r in rows])
    for row in rows:
        key = keys.get(row["api_key_id"])
        row["label"] = f"{key.name} ({key.prefix}…)" if key else f"Deleted key #{row['api_key_id']}"
        row["revoked"] = bool(key and not key.is_active)
    return rows


# --- smart Auto: the routing mix and its savings --------------------------------------------------------------

class _BilledAmount(Func):
    """`money.billed_amount` of two row expressions, in SQL: its twin `money.billed_amount_sql`, so the rounding
    rule is written once for Python and once for SQL, and tests/billing/test_money.py holds them together."""

    arity = 2
    output_field = DecimalField(max_digits=20, decimal_places=10)

    def as_sql(self, compiler, connection, **extra_context):
        (cost, cost_params), (markup, markup_params) = (compiler.compile(e) for e in self.get_source_expressions())
        return money.billed_amount_sql(cost=cost, markup_percent=markup), (*cost_params, *markup_params)


_AUTO = Q(requested_tier="auto")
# The rows savings are counted over: Auto turns with a counterfactual (see billing.money).
_AUTO_PRICED = _AUTO & Q(counterfactual_cost__isnull=False)


def _mix_totals() -> dict:
    """One pass over the rows: the turns by route, and the two sums of the savings rule."""
    return {
        "auto_turns": Count("id", filter=_AUTO),
        "escalated_turns": Count("id", filter=_AUTO & Q(route_escalated=True)),
        "max_turns": Count("id", filter=Q(requested_tier="max")),
        "other_turns": Count("id", filter=Q(requested_tier="")),
        "counterfactual_billed": Sum(_BilledAmount(F("counterfactual_cost"), F("markup_percent")),
                                     filter=_AUTO_PRICED),
        "actual_billed": Sum("billed", filter=_AUTO_PRICED),
    }


def _with_savings(row: dict) -> dict:
    """Complete an aggregate row of `_mix_totals` with the figures derived from it by the money rules."""
    row["counterfactual_billed"] = row["counterfactual_billed"] or money.ZERO
    row["actual_billed"] = row["actual_billed"] or money.ZERO
    row["saved"], row["saved_percent"] = money.savings(counterfactual_billed=row["counterfactual_billed"],
                                                       actual_billed=row["actual_billed"])
    row["stayed_turns"] = row["auto_turns"] - row["escalated_turns"]
    row["escalated_percent"] = money.share_percent(row["escalated_turns"], row["auto_turns"])
    row["turns"] = row["auto_turns"] + row["max_turns"] + row["other_turns"]
    return row


def smart_savings(*, tenant: Tenant, month: date, user_id: int | None = None, end_user: str | None = None) -> dict:
    """The month's turns of the tenant (or of one member) by route, and what smart Auto saved. One query.

    The routes: Auto that stayed on Auto (stayed_turns), Auto escalated to MAX (escalated_turns; auto_turns is
    both), MAX asked for (max_turns), and other (other_turns: a model named explicitly, or rows from before the
    requested tier was recorded). Savings: counterfactual_billed, actual_billed, saved, saved_percent (None when
    there is nothing to compare); escalated_percent is None without Auto turns.
    """
    return _with_savings(usage_list(tenant=tenant, month=month, user_id=user_id, end_user=end_user)
                         .aggregate(**_mix_totals()))


def routing_mix_all_tenants(*, month: date, rolled_up_at: datetime | None = None) -> dict[int, dict]:
    """`smart_savings` of every tenant with usage in the month, by tenant id: one grouped query over the month's
    ledger rows.

    Given the month's last rollup (`last_rollup_all_tenants`), the answer is cached until the next rollup: the
    query reads every row of the month (bench/billing_rollup.py measures it), which the finance overview, built
    on the rollup's invoice rows to stay fast, cannot pay on each render (the rollup task warms it). The mix then
    follows the ledger at the rollup's pace, like the invoice figures beside it. Without Redis it is computed.
    """
    def compute() -> dict[int, dict]:
        start, end = month_bounds(month)
        rows = (UsageRecord.objects.filter(recorded_at__gte=start, recorded_at__lt=end)
                .values("tenant_id").annotate(**_mix_totals()).order_by())
        return {row["tenant_id"]: _with_savings(row) for row in rows}

    key = f"billing:mix:{month:%Y-%m}:{rolled_up_at.isoformat()}" if rolled_up_at else None
    return read_through(key, MIX_CACHE_SECONDS, compute, what="routing mix")


def read_through(key: str | None, timeout: float, compute, *, what: str):
    """`compute()`, cached under `key` for `timeout` seconds (no key: always computed). A Redis that fails is
    logged and skipped: the page is computed, never refused."""
    if key is None:
        return compute()
    try:
        cached = cache.get(key)
    except redis.RedisError:
        logger.warning("%s cache unavailable", what, exc_info=True)
        return compute()
    if cached is not None:
        return cached
    value = compute()
    try:
        cache.set(key, value, timeout)
    except redis.RedisError:
        logger.warning("%s cache unavailable", what, exc_info=True)
    return value


def routing_mix_totals_all_tenants(mixes: dict[int, dict]) -> dict:
    """All tenants' mix from the per-tenant rows of `routing_mix_all_tenants`: sums of their exact sums (no second
    pass over the ledger), with the savings rule applied to the totals, not averaged over tenants."""
    keys = ("auto_turns", "escalated_turns", "max_turns", "other_turns", "counterfactual_billed", "actual_billed")
    totals = {key: sum((mix[key] for mix in mixes.values()), 0) for key in keys}
    return _with_savings(totals)


# --- a tenant's invoices -------------------------------------------------------------------------------------

def invoice_list(*, tenant: Tenant) -> QuerySet[Invoice]:
    return Invoice.objects.filter(tenant=tenant).select_related("tenant", "void").order_by("-month")


def invoice_get(*, tenant: Tenant, invoice_id) -> Invoice:
    """Raises Invoice.DoesNotExist for a missing id and for another tenant's id alike."""
    return invoice_list(tenant=tenant).prefetch_related("lines").get(pk=invoice_id)


# --- finance, across tenants ---------------------------------------------------------------------------------

OVERVIEW_SORTS = {
    "tenant": "tenant__name", "plan": "plan_name", "requests": "request_count", "tokens": "total_tokens",
    "cost": "usage_cost", "billed": "usage_billed", "margin": "margin_value", "total": "total",
    "status": "status",
}


def invoice_overview_all_tenants(*, month: date, sort: str = "billed", descending: bool = True) -> QuerySet:
    """Every tenant's invoice (draft or final) for the month, as plain rows: the finance overview.

    Reads the invoice rows the rollup keeps current, not the ledger, so it stays fast at any ledger size.
    """
    order = OVERVIEW_SORTS.get(sort, "usage_billed")
    return (Invoice.objects.filter(month=month)
            .annotate(margin_value=F("usage_billed") - F("usage_cost"))
            .order_by(f"-{order}" if descending else order, "tenant__name")
            .values("id", "tenant_id", "tenant__slug", "tenant__name", "plan_name", "status", "number",
                    "request_count", "total_tokens", "usage_cost", "usage_billed", "margin_value", "usage_amount",
                    "fee", "credit", "total", "void__created_at"))


def invoice_month_totals_all_tenants(*, month: date) -> dict:
    """The month's invoice figures summed. `total` leaves void invoices out; `credited` is what credit notes
    took off the month's invoices (positive), `net` the total after them."""
    totals = Invoice.objects.filter(month=month).aggregate(
        tenants=Count("id"), requests=Sum("request_count"), tokens=Sum("total_tokens"), cost=Sum("usage_cost"),
        billed=Sum("usage_billed"), fees=Sum("fee"), credit=Sum("credit"), total=Sum("total", filter=Q(void__isnull=True)),
        voided=Count("void"),
    )
    totals = {k: v or (0 if k in ("tenants", "requests", "tokens", "voided") else money.ZERO)
              for k, v in totals.items()}
    totals["margin"] = totals["billed"] - totals["cost"]
    totals["credited"] = -(CreditNote.objects.filter(invoice__month=month).aggregate(t=Sum("total"))["t"]
                           or money.ZERO)
    totals["net"] = totals["total"] - totals["credited"]
    return totals


def invoice_list_all_tenants(*, month: date | None = None, status: str | None = None) -> QuerySet[Invoice]:
    invoices = Invoice.objects.select_related("tenant", "void").order_by("-month", "number", "tenant__name")
    if month is not None:
        invoices = invoices.filter(month=month)
    if status:
        invoices = invoices.filter(status=status)
    return invoices


def invoice_get_all_tenants(*, invoice_id) -> Invoice:
    return Invoice.objects.select_related("tenant").prefetch_related("lines").get(pk=invoice_id)


def tenant_get_all_tenants(*, tenant_id) -> Tenant:
    return Tenant.objects.select_related("plan").get(pk=tenant_id)


def last_rollup_all_tenants(*, month: date):
    return Invoice.objects.filter(month=month).order_by("-rolled_up_at").values_list("rolled_up_at", flat=True).first()
