"""Celery beat tasks for billing. Thin: each calls one service; each is idempotent and safe to run concurrently
(the services serialize on a per-month advisory lock and the invoice counter row)."""

import logging

from celery import shared_task

from . import outbox, reconcile, selectors, services
from .months import month_start

logger = logging.getLogger(__name__)


@shared_task(name="billing.rollup_current_month")
def rollup_current_month() -> int:
    """Keep the current month's draft invoices up to date with the ledger, then warm the finance overview's
    routing mix for this rollup (cached per rollup: the first overview after it would otherwise pay the scan)."""
    month = month_start()
    count = services.invoice_rollup(month=month)
    selectors.routing_mix_all_tenants(month=month, rolled_up_at=selectors.last_rollup_all_tenants(month=month))
    return count


@shared_task(name="billing.finalize_ended_months")
def finalize_ended_months() -> int:
    """Finalize the drafts of every month that ended more than the grace period ago."""
    count = 0
    for month in services.invoice_months_to_finalize():
        count += len(services.invoice_finalize_month(month=month))
    return count


@shared_task(name="billing.reconcile_budgets")
def reconcile_budgets() -> int:
    """Repair budget counters in Redis that drifted from the ledger."""
    return reconcile.budget_reconcile_all_tenants()


@shared_task(name="billing.drain_outbox", ignore_result=True, acks_late=False)
def drain_outbox() -> dict:
    """Apply the outbox's waiting entries (usage rows and chat turn ends the database could not take when their
    answers ended). Idempotent: every entry is keyed by its usage key (see billing/outbox.py)."""
    return outbox.drain()
