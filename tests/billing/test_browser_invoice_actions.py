"""Finance's invoice operations in a real Chromium at 1280 and 375 px: finalize an ended month's draft, issue a
credit note, void an invoice (a reason required). Screenshots: artifacts/invoice-*-<width>.png."""

from datetime import UTC, date, datetime

import pytest
from django.contrib.auth.models import Permission

from billing.models import CreditNote, Invoice, InvoiceVoid
from billing.services import invoice_rollup
from tests.billing.conftest import record_usage_at
from tests.browser import DESKTOP, PHONE, overflow, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAST = date(2025, 3, 1)


@pytest.fixture
def manager(finance_user):
    finance_user.user_permissions.add(Permission.objects.get(codename="manage_invoices"))
    return finance_user


@pytest.fixture
def march_draft(plans, acme):
    # kimi 1,000,000 in + 100,000 out = $0.90 → $1.17 billed on Pro, covered by the $20 credit: total $49.00.
    record_usage_at(acme, datetime(2025, 3, 14, tzinfo=UTC), input_tokens=1_000_000, output_tokens=100_000)
    invoice_rollup(month=PAST)
    return Invoice.objects.get(tenant=acme, month=PAST)


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_finalize_credit_and_void_from_the_invoice_page(browser_pages, march_draft, manager, width):
    browser_pages.allow(r"status of 400 \(Bad Request\)")  # the refused form answers 400, on purpose
    page = browser_pages.open(manager, f"/finance/invoices/{march_draft.pk}/", width=width)
    page.get_by_role("button", name="Finalize now").click()
    page.wait_for_selector("text=Finalized as KC-000001")
    assert page.locator("h1").inner_text() == "Invoice KC-000001"

    page.get_by_role("link", name="Issue a credit note").click()
    page.fill("#id_reason", "Outage on 12 March")
    page.fill("#id_description_0", "Outage credit")
    page.fill("#id_amount_0", "-5")
    page.get_by_role("button", name="Issue credit note").click()
    assert "positive number" in page.locator("[data-action=credit-note]").inner_text()  # bad input: a form error
    assert not CreditNote.objects.exists()
    page.fill("#id_amount_0", "9.00")
    screenshot(page, "invoice-credit-note-form")
    page.get_by_role("button", name="Issue credit note").click()
    page.wait_for_selector("[data-credit-note=CN-000001]")
    assert page.locator("[data-net-due]").inner_text() == "$40.00"
    assert overflow(page) <= 0
    screenshot(page, "invoice-with-credit-note")
    assert page.get_by_role("link", name="Void…").count() == 0  # credited: void is no longer offered


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_voiding_asks_for_a_reason(browser_pages, march_draft, manager, width):
    from billing.invoice_actions import invoice_finalize

    invoice = invoice_finalize(invoice=march_draft, actor=manager)
    browser_pages.allow(r"status of 400 \(Bad Request\)")  # the refused form answers 400, on purpose
    page = browser_pages.open(manager, f"/finance/invoices/{invoice.pk}/", width=width)
    page.get_by_role("link", name="Void…").click()
    page.get_by_role("button", name="Void KC-000001").click()
    assert "Give a reason" in page.locator("[data-action=void]").inner_text()
    assert not InvoiceVoid.objects.exists()
    page.fill("#id_reason", "Billed to the wrong entity")
    screenshot(page, "invoice-void-form")
    page.get_by_role("button", name="Void KC-000001").click()
    page.wait_for_selector("[data-void]")
    assert page.locator("[data-status]").inner_text() == "void"
    assert "Billed to the wrong entity" in page.locator("[data-void]").inner_text()
    assert overflow(page) <= 0
    screenshot(page, "invoice-void")
