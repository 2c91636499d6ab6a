"""Invoices from the ledger: the set-based rollup of a month's drafts, and finalizing an ended month.

A draft is recomputed from the ledger whenever a rollup runs (beat's `billing.rollup_current_month`, or on demand
when a page finds the current month's figures stale: `invoice_rollup_if_stale`); a final invoice never changes.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from tenants.models import AuditEvent, Plan, Tenant
from tenants.services import audit_event

from . import money
from .models import Invoice, InvoiceCounter
from .months import month_bounds, month_start, next_month

logger = logging.getLogger(__name__)


class InvoiceFinalError(Exception):
    """A finalized invoice never changes."""


# --- rollup ------------------------------------------------------------------------------------------------

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
    duplicates even with concurrent runs; a second run finds no drafts and does nothing. Each invoice gets its
    audit row (`invoice.finalize`, no actor: the audit log shows "system") in the same transaction.
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
        # The same row per invoice a finance user's "Finalize now" writes, by "system".
        AuditEvent.objects.bulk_create([
            audit_event(actor=None, action="invoice.finalize", tenant=invoice.tenant, target=invoice,
                        before={"status": Invoice.STATUS_DRAFT},
                        after={"status": Invoice.STATUS_FINAL, "number": invoice.display_number,
                               "total": str(invoice.total)})
            for invoice in drafts], batch_size=500)
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


# --- the current month, live ---------------------------------------------------------------------------------

# A tenant's own invoice pages bring its draft up to date when it is older than this: one tenant's month is a
# small indexed scan, so the draft on /invoices/ follows the ledger within a minute, beat or no beat.
TENANT_LIVE_SECONDS = 60


def invoice_rollup_if_stale(*, month: date | None = None, tenant: Tenant | None = None) -> bool:
    """Roll the current month up now when the figures a page is about to show are stale. Returns whether it did.

    For one tenant: when its draft is missing or older than TENANT_LIVE_SECONDS. For all tenants (finance): when
    the month has no rollup yet, or the last one is older than two BILLING_ROLLUP_INTERVALs (beat not running, or
    just started: its first run comes one interval after start). Ended months are left to finalization, and a
    tenant whose invoice is final is left alone.
    """
    current = month_start()
    month = month or current
    if month != current:
        return False
    invoices = Invoice.objects.filter(month=month)
    if tenant is not None:
        invoices = invoices.filter(tenant=tenant)
        max_age = timedelta(seconds=TENANT_LIVE_SECONDS)
    else:
        interval = settings.CELERY_BEAT_SCHEDULE["billing-rollup-current-month"]["schedule"]
        max_age = timedelta(seconds=2 * float(interval))
    latest = invoices.order_by(F("rolled_up_at").desc(nulls_last=True)).values_list("status", "rolled_up_at").first()
    if latest is not None and (latest[0] == Invoice.STATUS_FINAL
                               or (latest[1] and latest[1] > timezone.now() - max_age)):
        return False
    invoice_rollup(month=month, tenant=tenant)
    return True
