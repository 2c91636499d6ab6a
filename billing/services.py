"""Writes for billing: the usage ledger, invoice rollup and finalization. Keyword-only, one per use case."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from tenants.models import AuditEvent, Plan, Tenant

from . import money
from .budget import budget_settle
from .models import Invoice, InvoiceCounter, InvoiceLine, UsageRecord
from .months import month_bounds, month_start, next_month

logger = logging.getLogger(__name__)

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
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
    price_input, price_output, price_cache_write, price_cache_read, cost, markup_percent, billed
) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (key) DO NOTHING
RETURNING id, recorded_at
"""


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
) -> UsageRecord:
    """Append one usage row; idempotent on `key` (a repeat returns the first row and changes nothing).

    Safe across processes: the unique index on `key` decides (INSERT ... ON CONFLICT DO NOTHING), and a writer
    racing an uncommitted insert of the same key waits for it. May be called inside the caller's transaction;
    the budget reservation under the same key is settled after that transaction commits. Bad input raises
    ValidationError and writes nothing.
    """
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
        billed=money.billed_amount(clean["cost"], markup),
        **tokens, **{name: clean[name] for name in PRICE_FIELDS},
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_USAGE, [
                tenant.pk, source, key, user_id, api_key_id, endpoint_slug, provider, tier,
                input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, record.output_estimated,
                *(getattr(record, name) for name in PRICE_FIELDS), record.cost, markup, record.billed,
            ])
            row = cursor.fetchone()
        if row is None:
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


def _usage_aggregate(*, month: date, tenant: Tenant | None):
    """One set-based query: the month's ledger summed per tenant and model endpoint."""
    start, end = month_bounds(month)
    rows = UsageRecord.objects.filter(recorded_at__gte=start, recorded_at__lt=end)
    if tenant is not None:
        rows = rows.filter(tenant=tenant)
    return (
        rows.values("tenant_id", "endpoint_slug", "provider")
        .annotate(
            request_count=Count("id"),
            estimated_count=Count("id", filter=Q(output_estimated=True)),
            **{name: Sum(name) for name in TOKEN_FIELDS},
            cost=Sum("cost"),
            billed=Sum("billed"),
        )
        .order_by()
    )


def _rollup_locked(*, month: date, tenant: Tenant | None = None) -> int:
    """Recompute the month's draft invoices from the ledger. Call inside a transaction holding the month lock."""
    now = timezone.now()
    _, end = month_bounds(month)
    final_tenants = set(
        Invoice.objects.filter(month=month, status=Invoice.STATUS_FINAL).values_list("tenant_id", flat=True))
    lines_by_tenant: dict[int, list[InvoiceLine]] = defaultdict(list)
    for row in _usage_aggregate(month=month, tenant=tenant):
        tenant_id = row.pop("tenant_id")
        if tenant_id in final_tenants:
            continue
        lines_by_tenant[tenant_id].append(InvoiceLine(amount=money.round_cents(row["billed"]), **row))

    # Tenants that existed during the month owe its fee; any tenant with usage in it gets an invoice.
    tenants = Tenant.objects.filter(Q(created_at__lt=end) | Q(pk__in=list(lines_by_tenant)))
    if tenant is not None:
        tenants = tenants.filter(pk=tenant.pk)
    tenant_rows = list(tenants.exclude(pk__in=final_tenants).values("id", "plan_id"))
    plans = _plans_at_month_end(month=month, tenants=tenant_rows)
    existing_drafts = set(Invoice.objects.filter(month=month, status=Invoice.STATUS_DRAFT)
                          .values_list("tenant_id", flat=True))

    invoices = []
    for t in tenant_rows:
        plan, lines = plans[t["id"]], lines_by_tenant.get(t["id"], [])
        # An invoice exists where there is something to bill (usage or a fee), or already did.
        if not lines and not plan.monthly_fee and t["id"] not in existing_drafts:
            continue
        usage_amount = sum((line.amount for line in lines), money.ZERO)
        credit = money.credit_applied(usage_amount=usage_amount, included_credit=plan.included_credit)
        invoices.append(Invoice(
            tenant_id=t["id"], month=month, status=Invoice.STATUS_DRAFT, plan=plan, plan_name=plan.name,
            markup_percent=plan.markup_percent, included_credit=plan.included_credit,
            request_count=sum(line.request_count for line in lines),
            total_tokens=sum(line.total_tokens for line in lines),
            usage_cost=sum((line.cost for line in lines), money.ZERO),
            usage_billed=sum((line.billed for line in lines), money.ZERO),
            usage_amount=usage_amount, fee=plan.monthly_fee, credit=credit,
            total=usage_amount - credit + plan.monthly_fee, rolled_up_at=now,
        ))
    Invoice.objects.bulk_create(
        invoices, batch_size=1000, update_conflicts=True, unique_fields=["tenant", "month"],
        update_fields=["plan", "plan_name", "markup_percent", "included_credit", "request_count", "total_tokens",
                       "usage_cost", "usage_billed", "usage_amount", "fee", "credit", "total", "rolled_up_at"],
    )
    all_lines = []
    for invoice in invoices:
        for line in lines_by_tenant.get(invoice.tenant_id, []):
            line.invoice_id = invoice.pk
            all_lines.append(line)
    # The ledger is append-only, so a draft's set of lines only ever grows: upserting is enough.
    InvoiceLine.objects.bulk_create(
        all_lines, batch_size=2000, update_conflicts=True, unique_fields=["invoice", "endpoint_slug", "provider"],
        update_fields=["request_count", "estimated_count", *TOKEN_FIELDS, "cost", "billed", "amount"],
    )
    return len(invoices)


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
