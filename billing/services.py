"""Writes for billing: the usage ledger, invoice rollup and finalization. Keyword-only, one per use case."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from tenants.models import AuditEvent, Plan, Tenant

from . import money
from .budget import budget_settle
from .models import END_USER_MAX_LENGTH, Invoice, InvoiceCounter, UsageRecord
from .months import month_bounds, month_start, next_month

logger = logging.getLogger(__name__)

PRICE_FIELDS = ("price_input", "price_output", "price_cache_write", "price_cache_read")
# Postgres integer columns; a single request never comes near.
MAX_TOKENS = 2**31 - 1


class InvoiceFinalError(Exception):
    """A finalized invoice never changes."""


# --- the usage ledger ----------------------------------------------------------------------------------------

_INSERT_USAGE = """
INSERT INTO billing_usagerecord (
    tenant_id, source, key, user_id, api_key_id, endpoint_slug, provider, tier,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, output_estimated,
    price_input, price_output, price_cache_write, price_cache_read, cost, markup_percent, billed,
    requested_tier, route_score, route_threshold, route_escalated, router_version, counterfactual_cost, end_user
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
          %s)
ON CONFLICT (key) DO NOTHING
RETURNING id, recorded_at
"""


def _validate_route(*, requested_tier, route_score, route_threshold, route_escalated, router_version,
                    errors: dict) -> None:
    if requested_tier not in ("", "auto", "max"):
        errors["requested_tier"] = 'The requested tier must be "auto", "max" or empty.'
    for name, value in (("route_score", route_score), ("route_threshold", route_threshold)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not 0 <= value <= 1):
            errors[name] = f"{name} must be a number from 0 to 1, or empty."
    if route_escalated not in (None, True, False):
        errors["route_escalated"] = "route_escalated must be true, false or empty."
    if not isinstance(router_version, str) or len(router_version) > 40:
        errors["router_version"] = "The router version is text of at most 40 characters."


def _validate_usage(*, source, key, tier, endpoint_slug, provider, tokens: dict, prices: dict, cost) -> dict:
    errors = {}
    if source not in (UsageRecord.SOURCE_CHAT, UsageRecord.SOURCE_API):
        errors["source"] = 'Source must be "chat" or "api".'
    if not isinstance(key, str) or not key.startswith(f"{source}:") or len(key) <= len(source) + 1 or len(key) > 200:
        errors["key"] = f'The key must look like "{source}:<id>" (at most 200 characters).'
    if tier not in ("auto", "max"):
        errors["tier"] = 'Tier must be "auto" or "max".'
    if not endpoint_slug or len(endpoint_slug) > 100:
        errors["endpoint_slug"] = "The endpoint slug is required (at most 100 characters)."
    if not provider or len(provider) > 50:
        errors["provider"] = "The provider is required (at most 50 characters)."
    for name, value in tokens.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
            errors[name] = "Token counts are whole numbers from 0."
    clean = {}
    for name, value in {**prices, "cost": cost}.items():
        try:
            value = money.require_decimal(value, name=name)
        except (TypeError, ValueError) as exc:
            errors[name] = str(exc)
            continue
        if value < 0:
            errors[name] = f"{name} cannot be negative."
        clean[name] = value
    if errors:
        raise ValidationError(errors)
    return clean


def usage_record(
    *,
    tenant: Tenant,
    source: str,
    key: str,
    user_id: int | None,
    api_key_id: int | None,
    endpoint_slug: str,
    provider: str,
    tier: str,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
    output_estimated: bool,
    price_input: Decimal,
    price_output: Decimal,
    price_cache_write: Decimal,
    price_cache_read: Decimal,
    cost: Decimal,
    requested_tier: str = "",
    route_score: float | None = None,
    route_threshold: float | None = None,
    route_escalated: bool | None = None,
    router_version: str = "",
    counterfactual_cost: Decimal | None = None,
    end_user: str | None = None,
) -> UsageRecord:
    """Append one usage row; idempotent on `key` (a repeat returns the first row and changes nothing).

    Safe across processes: the unique index on `key` decides (INSERT ... ON CONFLICT DO NOTHING), and a writer
    racing an uncommitted insert of the same key waits for it. May be called inside the caller's transaction;
    the budget reservation under the same key is settled after that transaction commits. Bad input raises
    ValidationError and writes nothing. The routing facts (requested tier, smart Auto's decision, the
    counterfactual MAX cost) are optional: routing.metering fills them. `end_user` is the tenant's own end-user id
    an API client sent (the proxy validated it), or None.
    """
    route_errors: dict = {}
    _validate_route(requested_tier=requested_tier, route_score=route_score, route_threshold=route_threshold,
                    route_escalated=route_escalated, router_version=router_version, errors=route_errors)
    if counterfactual_cost is not None:
        try:
            counterfactual_cost = money.to_ledger(money.require_decimal(counterfactual_cost,
                                                                        name="counterfactual_cost"))
            if counterfactual_cost < 0:
                route_errors["counterfactual_cost"] = "counterfactual_cost cannot be negative."
        except (TypeError, ValueError) as exc:
            route_errors["counterfactual_cost"] = str(exc)
    if end_user is not None and (not isinstance(end_user, str) or not 1 <= len(end_user) <= END_USER_MAX_LENGTH):
        route_errors["end_user"] = f"The end-user id is text of 1 to {END_USER_MAX_LENGTH} characters, or empty."
    if route_errors:
        raise ValidationError(route_errors)
    tokens = {"input_tokens": input_tokens, "output_tokens": output_tokens,
              "cache_read_tokens": cache_read_tokens, "cache_write_tokens": cache_write_tokens}
    prices = {"price_input": price_input, "price_output": price_output,
              "price_cache_write": price_cache_write, "price_cache_read": price_cache_read}
    clean = _validate_usage(source=source, key=key, tier=tier, endpoint_slug=endpoint_slug, provider=provider,
                            tokens=tokens, prices=prices, cost=cost)
    markup = tenant.plan.markup_percent
    record = UsageRecord(
        tenant=tenant, source=source, key=key, user_id=user_id, api_key_id=api_key_id,
        endpoint_slug=endpoint_slug, provider=provider, tier=tier, output_estimated=bool(output_estimated),
        markup_percent=markup, cost=money.to_ledger(clean["cost"]),
        billed=money.billed_amount(clean["cost"], markup), requested_tier=requested_tier,
        route_score=route_score, route_threshold=route_threshold, route_escalated=route_escalated,
        router_version=router_version, counterfactual_cost=counterfactual_cost, end_user=end_user,
        **tokens, **{name: clean[name] for name in PRICE_FIELDS},
    )
    # One statement, no transaction block of its own: the INSERT is atomic by itself, and outside a caller's
    # transaction it commits at once (autocommit) — one round trip to Postgres instead of BEGIN, INSERT,
    # COMMIT. Inside a caller's transaction it simply joins it, and on_commit waits for that commit.
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_USAGE, [
            tenant.pk, source, key, user_id, api_key_id, endpoint_slug, provider, tier,
            input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, record.output_estimated,
            *(getattr(record, name) for name in PRICE_FIELDS), record.cost, markup, record.billed,
            requested_tier, route_score, route_threshold, route_escalated, router_version, counterfactual_cost,
            end_user,
        ])
        row = cursor.fetchone()
    if row is None:
        # The conflicting row is committed (ON CONFLICT waited for its writer), so this read sees it.
        existing = UsageRecord.objects.get(key=key)
        if existing.tenant_id != tenant.pk:
            raise ValidationError({"key": "This usage key belongs to another tenant."})
        return existing
    record.pk, record.recorded_at = row
    record._state.adding = False
    transaction.on_commit(lambda: budget_settle(
        tenant_id=tenant.pk, key=key, billed=record.billed, recorded_at=record.recorded_at))
    return record


# --- invoices ------------------------------------------------------------------------------------------------

# Rollup and finalization of one month serialize on this advisory lock (released at transaction end), so a
# second run — a redelivered task, a concurrent beat — waits and then recomputes the same numbers.
_LOCK_CLASS = 0x4B43  # "KC"


def _lock_month(month: date) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, month.year * 100 + month.month])


def _plans_at_month_end(*, month: date, tenants: list[dict]) -> dict[int, Plan]:
    """The plan each tenant is on when the month ends: today's plan, unless the audit log shows a plan change
    since the month ended, in which case the plan before the first such change."""
    plans = {p.pk: p for p in Plan.objects.all()}
    by_slug = {p.slug: p for p in plans.values()}
    result = {t["id"]: plans[t["plan_id"]] for t in tenants}
    _, end = month_bounds(month)
    if end <= timezone.now():
        later_changes = (AuditEvent.objects.filter(action="tenant.plan_change", created_at__gte=end,
                                                   tenant_id__in=result.keys())
                         .order_by("tenant_id", "created_at", "id").values_list("tenant_id", "before"))
        seen = set()
        for tenant_id, before in later_changes:
            if tenant_id in seen:
                continue
            seen.add(tenant_id)
            slug = (before or {}).get("plan")
            if slug in by_slug:
                result[tenant_id] = by_slug[slug]
    return result


# The rollup of a month is two statements. First the month's ledger is aggregated per tenant and endpoint into
# a temporary table: a plain SELECT, so Postgres may scan the ledger with parallel workers (it never does for
# a statement that also writes). Then one statement sums it per tenant (`per_tenant`), upserts the draft
# invoices (`inv`; a final invoice is never touched: DO UPDATE has WHERE status = 'draft') and their lines.
# Lines are rounded to cents here, by the rule in billing.money; invoice figures are sums of the rounded lines.
_ROLLUP_AGG_SQL = """
CREATE TEMPORARY TABLE billing_rollup_agg ON COMMIT DROP AS
SELECT tenant_id, endpoint_slug, provider,
       count(*) AS request_count,
       count(*) FILTER (WHERE output_estimated) AS estimated_count,
       sum(input_tokens)::bigint AS input_tokens, sum(output_tokens)::bigint AS output_tokens,
       sum(cache_read_tokens)::bigint AS cache_read_tokens, sum(cache_write_tokens)::bigint AS cache_write_tokens,
       sum(cost) AS cost, sum(billed) AS billed, {line_amount} AS amount
FROM billing_usagerecord
WHERE recorded_at >= %(start)s AND recorded_at < %(end)s {tenant_filter}
GROUP BY tenant_id, endpoint_slug, provider
"""

_ROLLUP_SQL = """
WITH agg AS (SELECT * FROM billing_rollup_agg),
plan_of AS (
    SELECT * FROM unnest(%(tenant_ids)s::bigint[], %(plan_ids)s::bigint[], %(existed)s::boolean[])
        AS p(tenant_id, plan_id, existed)
),
per_tenant AS (
    SELECT p.tenant_id, p.plan_id, p.existed, count(a.tenant_id) AS line_count,
           coalesce(sum(a.request_count), 0) AS request_count,
           coalesce(sum(a.input_tokens + a.output_tokens + a.cache_read_tokens + a.cache_write_tokens), 0)
               AS total_tokens,
           coalesce(sum(a.cost), 0) AS usage_cost, coalesce(sum(a.billed), 0) AS usage_billed,
           coalesce(sum(a.amount), 0) AS usage_amount
    FROM plan_of p LEFT JOIN agg a ON a.tenant_id = p.tenant_id
    GROUP BY p.tenant_id, p.plan_id, p.existed
),
inv AS (
    INSERT INTO billing_invoice (
        tenant_id, month, status, plan_id, plan_name, markup_percent, included_credit, request_count,
        total_tokens, usage_cost, usage_billed, usage_amount, fee, credit, total, rolled_up_at)
    SELECT t.tenant_id, %(month)s, 'draft', pl.id, pl.name, pl.markup_percent, pl.included_credit,
           t.request_count, t.total_tokens, t.usage_cost, t.usage_billed, t.usage_amount, pl.monthly_fee,
           {credit}, t.usage_amount - {credit} + pl.monthly_fee, %(now)s
    FROM per_tenant t JOIN tenants_plan pl ON pl.id = t.plan_id
    -- Something to bill (usage, or a fee for a tenant that existed that month), or a draft that already exists.
    WHERE t.line_count > 0 OR (t.existed AND pl.monthly_fee > 0)
       OR EXISTS (SELECT 1 FROM billing_invoice d WHERE d.tenant_id = t.tenant_id AND d.month = %(month)s)
    ON CONFLICT (tenant_id, month) DO UPDATE SET
        plan_id = EXCLUDED.plan_id, plan_name = EXCLUDED.plan_name, markup_percent = EXCLUDED.markup_percent,
        included_credit = EXCLUDED.included_credit, request_count = EXCLUDED.request_count,
        total_tokens = EXCLUDED.total_tokens, usage_cost = EXCLUDED.usage_cost,
        usage_billed = EXCLUDED.usage_billed, usage_amount = EXCLUDED.usage_amount, fee = EXCLUDED.fee,
        credit = EXCLUDED.credit, total = EXCLUDED.total, rolled_up_at = EXCLUDED.rolled_up_at
    WHERE billing_invoice.status = 'draft'
    RETURNING id, tenant_id
),
lines AS (
    -- The ledger is append-only, so a draft's set of lines only ever grows: upserting is enough.
    INSERT INTO billing_invoiceline (
        invoice_id, endpoint_slug, provider, request_count, estimated_count, input_tokens, output_tokens,
        cache_read_tokens, cache_write_tokens, cost, billed, amount)
    SELECT inv.id, a.endpoint_slug, a.provider, a.request_count, a.estimated_count, a.input_tokens,
           a.output_tokens, a.cache_read_tokens, a.cache_write_tokens, a.cost, a.billed, a.amount
    FROM agg a JOIN inv ON inv.tenant_id = a.tenant_id
    ON CONFLICT (invoice_id, endpoint_slug, provider) DO UPDATE SET
        request_count = EXCLUDED.request_count, estimated_count = EXCLUDED.estimated_count,
        input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens,
        cache_read_tokens = EXCLUDED.cache_read_tokens, cache_write_tokens = EXCLUDED.cache_write_tokens,
        cost = EXCLUDED.cost, billed = EXCLUDED.billed, amount = EXCLUDED.amount
    RETURNING 1
)
SELECT (SELECT count(*) FROM inv), (SELECT count(*) FROM lines)
"""


def _rollup_locked(*, month: date, tenant: Tenant | None = None) -> int:
    """Recompute the month's draft invoices from the ledger in one statement. Returns how many drafts were
    written. Call inside a transaction holding the month lock."""
    start, end = month_bounds(month)
    final = Invoice.objects.filter(month=month, status=Invoice.STATUS_FINAL).values("tenant_id")
    tenants = Tenant.objects.exclude(pk__in=final)
    if tenant is not None:
        tenants = tenants.filter(pk=tenant.pk)
    tenant_rows = list(tenants.values("id", "plan_id", "created_at"))
    plans = _plans_at_month_end(month=month, tenants=tenant_rows)
    params = {
        "start": start, "end": end, "month": month, "now": timezone.now(),
        "tenant_id": tenant.pk if tenant is not None else None,
        "tenant_ids": [t["id"] for t in tenant_rows],
        "plan_ids": [plans[t["id"]].pk for t in tenant_rows],
        "existed": [t["created_at"] < end for t in tenant_rows],
    }
    with connection.cursor() as cursor:
        # Dropped at commit, and here too, so a second rollup in the same transaction starts clean.
        cursor.execute("DROP TABLE IF EXISTS billing_rollup_agg")
        cursor.execute(_ROLLUP_AGG_SQL.format(
            line_amount=money.round_cents_sql("sum(billed)"),
            tenant_filter="AND tenant_id = %(tenant_id)s" if tenant is not None else "",
        ), params)
        cursor.execute(_ROLLUP_SQL.format(
            credit=money.credit_applied_sql(usage_amount="t.usage_amount", included_credit="pl.included_credit"),
        ), params)
        invoices, _lines = cursor.fetchone()
        cursor.execute("DROP TABLE billing_rollup_agg")
    return invoices


def invoice_rollup(*, month: date, tenant: Tenant | None = None) -> int:
    """Bring the month's draft invoices up to date with the ledger (all tenants, or one). Returns how many
    drafts were written. Idempotent and safe to run concurrently. Rolling up a tenant whose invoice for the
    month is final raises InvoiceFinalError; an all-tenant rollup skips final invoices."""
    with transaction.atomic():
        _lock_month(month)
        if tenant is not None and Invoice.objects.filter(tenant=tenant, month=month,
                                                          status=Invoice.STATUS_FINAL).exists():
            raise InvoiceFinalError(f"The {month:%B %Y} invoice of {tenant.name} is final and cannot change.")
        return _rollup_locked(month=month, tenant=tenant)


def invoice_finalize_month(*, month: date) -> list[Invoice]:
    """Close an ended month: a last rollup, then every draft gets the next invoice number and becomes final.

    Numbers come from the counter row locked FOR UPDATE in the same transaction, so they have no gaps and no
    duplicates even with concurrent runs; a second run finds no drafts and does nothing.
    """
    _, end = month_bounds(month)
    if end > timezone.now():
        raise ValueError(f"{month:%B %Y} has not ended yet; it can be finalized from {end:%-d %B %Y} (UTC).")
    with transaction.atomic():
        _lock_month(month)
        _rollup_locked(month=month)
        drafts = list(Invoice.objects.filter(month=month, status=Invoice.STATUS_DRAFT)
                      .select_related("tenant").order_by("tenant__name", "tenant_id"))
        if not drafts:
            return []
        counter, _ = InvoiceCounter.objects.select_for_update().get_or_create(name="invoice")
        now = timezone.now()
        for invoice in drafts:
            counter.last_number += 1
            invoice.number = counter.last_number
            invoice.status = Invoice.STATUS_FINAL
            invoice.finalized_at = now
        Invoice.objects.bulk_update(drafts, ["number", "status", "finalized_at"], batch_size=500)
        counter.save(update_fields=["last_number"])
    logger.info("finalized %d invoices for %s", len(drafts), month)
    return drafts


def invoice_months_to_finalize(*, now=None) -> list[date]:
    """Ended months that still hold drafts (or were never rolled up), once the grace period has passed.

    The grace lets requests that started before midnight commit their rows before the month closes.
    """
    now = now or timezone.now()
    grace = timedelta(seconds=getattr(settings, "BILLING_FINALIZE_GRACE_SECONDS", 3600))
    current = month_start(now)
    months = set(Invoice.objects.filter(status=Invoice.STATUS_DRAFT, month__lt=current)
                 .values_list("month", flat=True).distinct())
    previous = month_start(month_bounds(current)[0] - timedelta(days=1))
    if not Invoice.objects.filter(month=previous).exists():
        months.add(previous)
    return sorted(m for m in months if month_bounds(m)[1] + grace <= now and next_month(m) <= current)
