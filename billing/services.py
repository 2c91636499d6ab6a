"""Writes for billing, keyword-only, one per use case: the usage ledger here; invoice rollup and finalization in
`billing.invoices`, finance's invoice actions (finalize on demand, void, credit notes) in `billing.invoice_actions`.
Both are re-exported here, so `billing.services` stays the one place callers import writes from."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connection, transaction

from tenants.models import Tenant

from . import money
from .budget import budget_settle
from .invoices import (  # noqa: F401 - re-exported: callers import writes from billing.services
    InvoiceFinalError,
    invoice_finalize_month,
    invoice_months_to_finalize,
    invoice_rollup,
    invoice_rollup_if_stale,
)
from .models import END_USER_MAX_LENGTH, UsageRecord

logger = logging.getLogger(__name__)

PRICE_FIELDS = ("price_input", "price_output", "price_cache_write", "price_cache_read")
# Postgres integer columns; a single request never comes near.
MAX_TOKENS = 2**31 - 1


# --- the usage ledger ----------------------------------------------------------------------------------------

INSERT_USAGE = """
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


@dataclass
class UsageInsert:
    """One checked usage row: the unsaved record, and INSERT_USAGE's parameters for it."""
    record: UsageRecord
    params: list


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


def usage_insert(
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
) -> UsageInsert:
    """Check one usage row and map it to its ledger columns, without touching the database: the statement
    (`INSERT_USAGE`) and its parameters, and the unsaved record. `usage_record` executes it on Django's connection,
    the proxy's usage writer on the event loop's own (proxy/usage_writer.py). Bad input raises ValidationError.
    The routing facts (requested tier, smart Auto's decision, the counterfactual MAX cost) are optional:
    routing.metering fills them. `end_user` is the tenant's own end-user id an API client sent (the proxy
    validated it), or None.
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
    return UsageInsert(record=record, params=[
        tenant.pk, source, key, user_id, api_key_id, endpoint_slug, provider, tier,
        input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, record.output_estimated,
        *(getattr(record, name) for name in PRICE_FIELDS), record.cost, markup, record.billed,
        requested_tier, route_score, route_threshold, route_escalated, router_version, counterfactual_cost,
        end_user,
    ])


def usage_record(**row) -> UsageRecord:
    """Append one usage row (the keyword arguments of `usage_insert`); idempotent on `key` (a repeat returns the
    first row and changes nothing).

    Safe across processes: the unique index on `key` decides (INSERT ... ON CONFLICT DO NOTHING), and a writer
    racing an uncommitted insert of the same key waits for it. May be called inside the caller's transaction;
    the budget reservation under the same key is settled after that transaction commits. Bad input raises
    ValidationError and writes nothing.
    """
    insert = usage_insert(**row)
    record = insert.record
    # One statement, no transaction block of its own: the INSERT is atomic by itself, and outside a caller's
    # transaction it commits at once (autocommit) — one round trip to Postgres instead of BEGIN, INSERT,
    # COMMIT. Inside a caller's transaction it simply joins it, and on_commit waits for that commit.
    with connection.cursor() as cursor:
        cursor.execute(INSERT_USAGE, insert.params)
        inserted = cursor.fetchone()
    if inserted is None:
        # The conflicting row is committed (ON CONFLICT waited for its writer), so this read sees it.
        return usage_existing(record, UsageRecord.objects.get(key=record.key))
    usage_inserted(record, inserted)
    transaction.on_commit(lambda: budget_settle(
        tenant_id=record.tenant_id, key=record.key, billed=record.billed, recorded_at=record.recorded_at))
    return record


def usage_inserted(record: UsageRecord, inserted) -> UsageRecord:
    """`record` with the id and time INSERT_USAGE returned for it."""
    record.pk, record.recorded_at = inserted
    record._state.adding = False
    return record


def usage_existing(record: UsageRecord, existing: UsageRecord) -> UsageRecord:
    """The row already in the ledger under `record`'s key (a repeat): returned as the answer, if it is the same
    tenant's."""
    if existing.tenant_id != record.tenant_id:
        raise ValidationError({"key": "This usage key belongs to another tenant."})
    return existing
