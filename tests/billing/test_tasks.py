"""The beat tasks call their services and are safe to run twice."""

from datetime import UTC, date, datetime
from decimal import Decimal

from billing import tasks
from billing.models import Invoice
from billing.months import month_start
from billing.services import invoice_rollup
from tests.billing.conftest import record_usage, record_usage_at


def test_rollup_task_keeps_the_current_draft_up_to_date(acme):
    record_usage(acme, input_tokens=1_000_000, output_tokens=0)
    assert tasks.rollup_current_month() == 1
    assert tasks.rollup_current_month() == 1
    invoice = Invoice.objects.get(tenant=acme, month=month_start())
    assert (invoice.status, invoice.usage_cost, invoice.request_count) == ("draft", Decimal("0.60"), 1)


def test_finalize_task_closes_ended_months_once(acme, settings):
    settings.BILLING_FINALIZE_GRACE_SECONDS = 0
    record_usage_at(acme, datetime(2025, 6, 3, tzinfo=UTC))
    invoice_rollup(month=date(2025, 6, 1))  # what the rollup beat did during June
    record_usage(acme)  # the current month stays a draft
    tasks.rollup_current_month()
    first = tasks.finalize_ended_months()
    assert first >= 1
    assert tasks.finalize_ended_months() == 0
    assert Invoice.objects.get(month="2025-06-01").is_final
    assert not Invoice.objects.get(month=month_start()).is_final


def test_reconcile_task_runs(acme, budget_redis):
    assert tasks.reconcile_budgets() == 0


def test_rollup_task_warms_the_finance_overviews_routing_mix(acme, budget_redis, django_assert_num_queries):
    from billing.selectors import last_rollup_all_tenants, routing_mix_all_tenants

    record_usage(acme)
    tasks.rollup_current_month()
    month = month_start()
    rolled_up_at = last_rollup_all_tenants(month=month)
    with django_assert_num_queries(0):  # the mix of this rollup is already cached: no ledger scan
        mixes = routing_mix_all_tenants(month=month, rolled_up_at=rolled_up_at)
    assert acme.pk in mixes
