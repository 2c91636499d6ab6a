"""Invoices: exact sums from ledger to lines to totals, idempotent rollup, gapless finalization, immutability."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from billing.models import Invoice, InvoiceLine
from billing.months import month_start
from billing.services import (
    InvoiceFinalError,
    invoice_finalize_month,
    invoice_months_to_finalize,
    invoice_rollup,
)
from tenants.models import AuditEvent
from tenants.services import tenant_change_plan
from tests.billing.conftest import record_usage, record_usage_at
from tests.factories import TenantFactory, UserFactory

PAST = date(2025, 3, 1)
IN_PAST = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


def _lines(invoice):
    return {line.endpoint_slug: line for line in invoice.lines.all()}


def _snapshot(month):
    return sorted(
        (i.tenant_id, i.status, i.number, i.usage_cost, i.usage_billed, i.usage_amount, i.fee, i.credit, i.total,
         tuple(sorted((ln.endpoint_slug, ln.request_count, ln.input_tokens, ln.output_tokens, ln.cache_read_tokens,
                       ln.cache_write_tokens, ln.estimated_count, ln.cost, ln.billed, ln.amount)
                      for ln in i.lines.all())))
        for i in Invoice.objects.filter(month=month).prefetch_related("lines"))


def _mixed_month(acme):
    """Pro plan (markup 30%, fee 49.00, credit 20.00). Costs by hand from published prices."""
    record_usage(acme, endpoint="claude-opus-4-6", input_tokens=1234, output_tokens=567,
                 cache_read_tokens=10_000, cache_write_tokens=2_000)            # 0.037845
    record_usage(acme, endpoint="claude-opus-4-6", input_tokens=2_000_000, output_tokens=300_000)  # 17.5
    record_usage(acme, endpoint="claude-opus-4-6", input_tokens=0, output_tokens=1,
                 output_estimated=True)                                          # 0.000025
    record_usage(acme, endpoint="kimi-k2.5", input_tokens=1_000_000, output_tokens=100_000,
                 cache_read_tokens=50_000)                                       # 0.905
    record_usage(acme, endpoint="kimi-k2.5", input_tokens=333, output_tokens=777,
                 output_estimated=True)                                          # 0.0025308
    record_usage(acme, endpoint="claude-sonnet-4-6", input_tokens=10, output_tokens=10)  # 0.00018


def test_costs_sum_exactly_from_ledger_to_lines_to_totals(acme):
    _mixed_month(acme)
    invoice_rollup(month=month_start())
    invoice = Invoice.objects.get(tenant=acme, month=month_start())
    lines = _lines(invoice)

    opus = lines["claude-opus-4-6"]
    assert (opus.request_count, opus.estimated_count) == (3, 1)
    assert (opus.input_tokens, opus.output_tokens, opus.cache_read_tokens, opus.cache_write_tokens) == (
        2_001_234, 300_568, 10_000, 2_000)
    assert opus.cost == Decimal("17.537870")
    assert opus.billed == Decimal("22.799231")
    assert opus.amount == Decimal("22.80")

    kimi = lines["kimi-k2.5"]
    assert kimi.cost == Decimal("0.9075308")
    assert kimi.billed == Decimal("1.17979004")
    assert kimi.amount == Decimal("1.18")
    assert (kimi.request_count, kimi.estimated_count, kimi.cache_read_tokens) == (2, 1, 50_000)

    sonnet = lines["claude-sonnet-4-6"]
    assert (sonnet.cost, sonnet.billed, sonnet.amount) == (Decimal("0.00018"), Decimal("0.000234"), Decimal("0.00"))

    assert invoice.usage_cost == Decimal("18.4455808")
    assert invoice.usage_billed == Decimal("23.97925504")
    assert invoice.usage_amount == Decimal("23.98")  # sum of rounded lines
    assert invoice.fee == Decimal("49.00")
    assert invoice.credit == Decimal("20.00")
    assert invoice.total == Decimal("52.98")
    assert (invoice.request_count, invoice.plan_name, invoice.status) == (6, "Pro", "draft")


def test_lines_round_half_up_once(acme):
    # Kimi output at $3/M with +30%: 1,282 tokens cost 0.003846, bill 0.0049998 → 0.00; 1,283 → 0.0050037 → 0.01.
    record_usage(acme, endpoint="kimi-k2.5", input_tokens=0, output_tokens=0, cost=Decimal("0.0038461538"))
    invoice_rollup(month=month_start())
    line = InvoiceLine.objects.get(invoice__tenant=acme)
    assert line.billed == Decimal("0.0049999999")
    assert line.amount == Decimal("0.00")
    record_usage(acme, endpoint="kimi-k2.5", input_tokens=0, output_tokens=0, cost=Decimal("0.0000000001"))
    invoice_rollup(month=month_start())
    line.refresh_from_db()
    assert line.billed == Decimal("0.0050000000")
    assert line.amount == Decimal("0.01")


def test_credit_never_takes_usage_below_zero_nor_offsets_the_fee(acme):
    record_usage(acme, endpoint="kimi-k2.5", input_tokens=1_000_000, output_tokens=0)  # bills 0.78
    invoice_rollup(month=month_start())
    invoice = Invoice.objects.get(tenant=acme)
    assert (invoice.usage_amount, invoice.credit, invoice.total) == (Decimal("0.78"), Decimal("0.78"), Decimal("49.00"))


def test_a_paid_plan_without_usage_gets_a_fee_only_invoice_and_a_free_one_none(acme, globex):
    invoice_rollup(month=month_start())
    invoice = Invoice.objects.get(month=month_start())
    assert invoice.tenant == acme
    assert (invoice.usage_amount, invoice.total, invoice.lines.count()) == (Decimal("0.00"), Decimal("49.00"), 0)


def test_rollup_twice_gives_the_same_invoice(acme, globex):
    _mixed_month(acme)
    record_usage(globex, input_tokens=5000)
    invoice_rollup(month=month_start())
    first = _snapshot(month_start())
    invoice_rollup(month=month_start())
    assert _snapshot(month_start()) == first
    assert Invoice.objects.count() == 2 and InvoiceLine.objects.count() == 4


def test_rollup_after_new_rows_arrive_catches_up(acme):
    _mixed_month(acme)
    invoice_rollup(month=month_start())
    record_usage(acme, endpoint="kimi-k2.5", input_tokens=1_000_000, output_tokens=0)  # + 0.60 cost
    invoice_rollup(month=month_start())
    invoice = Invoice.objects.get(tenant=acme)
    kimi = _lines(invoice)["kimi-k2.5"]
    assert kimi.request_count == 3
    assert kimi.cost == Decimal("1.5075308")
    assert invoice.usage_cost == Decimal("19.0455808")
    assert invoice.usage_amount == Decimal("22.80") + Decimal("1.96") + Decimal("0.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_rollups_give_the_same_invoice(plans):
    acme = TenantFactory(slug="acme", name="Acme Corp", plan=plans["pro"])
    _mixed_month(acme)
    barrier = threading.Barrier(4)

    def run(_):
        try:
            barrier.wait(timeout=10)
            return invoice_rollup(month=month_start())
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(run, range(4))) == [1, 1, 1, 1]
    invoice = Invoice.objects.get(tenant=acme)
    assert invoice.total == Decimal("52.98") and invoice.lines.count() == 3


def test_rows_belong_to_the_month_of_recorded_at(acme):
    record_usage_at(acme, datetime(2025, 3, 31, 23, 59, 59, 999999, tzinfo=UTC), input_tokens=1_000_000,
                    output_tokens=0)
    record_usage_at(acme, datetime(2025, 4, 1, 0, 0, tzinfo=UTC), input_tokens=2_000_000, output_tokens=0)
    invoice_rollup(month=PAST)
    assert Invoice.objects.get(tenant=acme, month=PAST).usage_cost == Decimal("0.60")


def test_finalize_numbers_invoices_in_sequence_without_gaps(acme, globex):
    initech = TenantFactory(slug="initech", name="Initech")
    for tenant in (acme, globex, initech):
        record_usage_at(tenant, IN_PAST)
    finalized = invoice_finalize_month(month=PAST)
    assert [(i.tenant.name, i.number, i.status) for i in finalized] == [
        ("Acme Corp", 1, "final"), ("Globex", 2, "final"), ("Initech", 3, "final")]
    assert invoice_finalize_month(month=PAST) == []  # a second run changes nothing
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [1, 2, 3]
    # One audit row per invoice, by no one (the audit log shows "system"), and none for the second run.
    events = AuditEvent.objects.filter(action="invoice.finalize").order_by("id")
    assert [(e.tenant.name, e.actor_id, e.actor_email, e.target_type, e.after["number"], e.before["status"])
            for e in events] == [("Acme Corp", None, "", "invoice", "KC-000001", "draft"),
                                 ("Globex", None, "", "invoice", "KC-000002", "draft"),
                                 ("Initech", None, "", "invoice", "KC-000003", "draft")]
    assert [e.target_id for e in events] == [str(i.pk) for i in finalized]
    assert [e.after["total"] for e in events] == [str(i.total) for i in finalized]

    record_usage_at(acme, datetime(2025, 4, 2, tzinfo=UTC))
    # Only acme used April; the Pro fee alone makes no 2025 invoice for tenants created after it (all of them).
    assert [i.number for i in invoice_finalize_month(month=date(2025, 4, 1))] == [4]
    assert Invoice.objects.get(tenant=acme, month=PAST).display_number == "KC-000001"


@pytest.mark.django_db(transaction=True)
def test_concurrent_finalization_numbers_without_gaps_or_duplicates(plans):
    tenants = [TenantFactory(slug=f"t{i}", name=f"Tenant {i:02d}", plan=plans["free"]) for i in range(12)]
    for month in (1, 2, 3):
        for tenant in tenants:
            record_usage_at(tenant, datetime(2025, month, 10, tzinfo=UTC))
    months = [date(2025, m, 1) for m in (1, 2, 3)] * 2
    barrier = threading.Barrier(len(months))

    def run(month):
        try:
            barrier.wait(timeout=10)
            return len(invoice_finalize_month(month=month))
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(months)) as pool:
        counts = list(pool.map(run, months))
    assert sum(counts) == 36
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == list(range(1, 37))


def test_the_fee_is_the_plan_at_month_end_even_after_a_later_change(acme, plans):
    admin = UserFactory(email="ops@kiwiclaw.test")
    record_usage_at(acme, IN_PAST)
    tenant_change_plan(tenant=acme, plan=plans["enterprise"], actor=admin)  # today, after March ended
    [invoice] = invoice_finalize_month(month=PAST)
    assert (invoice.plan_name, invoice.fee, invoice.included_credit) == ("Pro", Decimal("49.00"), Decimal("20.00"))


def test_a_month_that_has_not_ended_cannot_be_finalized(acme):
    with pytest.raises(ValueError, match="has not ended"):
        invoice_finalize_month(month=month_start())


def test_a_final_invoice_cannot_be_changed_through_services(acme):
    record_usage_at(acme, IN_PAST)
    [invoice] = invoice_finalize_month(month=PAST)
    record_usage_at(acme, IN_PAST + timedelta(hours=1))  # a late row never changes a final invoice
    with pytest.raises(InvoiceFinalError, match="is final"):
        invoice_rollup(month=PAST, tenant=acme)
    invoice_rollup(month=PAST)  # the all-tenant rollup skips it
    invoice_finalize_month(month=PAST)
    fresh = Invoice.objects.get(pk=invoice.pk)
    assert (fresh.total, fresh.request_count, fresh.number) == (invoice.total, 1, 1)


def test_a_final_invoice_cannot_be_changed_in_the_database(acme):
    record_usage_at(acme, IN_PAST)
    [invoice] = invoice_finalize_month(month=PAST)
    line = invoice.lines.get()
    for attempt in (
        lambda: Invoice.objects.filter(pk=invoice.pk).update(total=Decimal("0")),
        lambda: Invoice.objects.filter(pk=invoice.pk).delete(),
        lambda: InvoiceLine.objects.filter(pk=line.pk).update(amount=Decimal("0")),
        lambda: InvoiceLine.objects.create(invoice=invoice, endpoint_slug="x", provider="y"),
    ):
        with pytest.raises(IntegrityError, match="is final"), transaction.atomic():
            attempt()
    assert Invoice.objects.get(pk=invoice.pk).total == invoice.total


def test_months_to_finalize_wait_for_the_grace_period(acme, settings):
    settings.BILLING_FINALIZE_GRACE_SECONDS = 3600
    record_usage_at(acme, IN_PAST)
    invoice_rollup(month=PAST)
    assert invoice_months_to_finalize(now=datetime(2025, 4, 1, 0, 30, tzinfo=UTC)) == []
    assert invoice_months_to_finalize(now=datetime(2025, 4, 1, 1, 0, tzinfo=UTC)) == [PAST]
