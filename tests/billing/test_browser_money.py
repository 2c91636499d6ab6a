"""Money that adds up, in a real Chromium at 1280 and 375 px: the usage card and the tables beside it show a
sub-cent total the same way, and the current month is on /finance/ and /invoices/ before any periodic rollup.
Screenshots: artifacts/money-*-<width>.png."""

import pytest

from billing.models import Invoice
from tests.billing.conftest import record_usage
from tests.browser import DESKTOP, PHONE, overflow, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server_url(server_url, budget_redis):
    return server_url


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_a_sub_cent_month_reads_the_same_on_the_card_and_in_the_tables(browser_pages, plans, acme, alice, width):
    # kimi: 1,000 × $0.60/M + 500 × $3.00/M = $0.0021 cost; Pro's 30% markup → $0.00273 billed → $0.0027.
    record_usage(acme, input_tokens=1000, output_tokens=500, user_id=alice.pk)
    page = browser_pages.open(alice, "/usage/", width=width)
    assert page.locator("[data-total-billed]").inner_text() == "$0.0027"
    assert page.locator("tr[data-model='kimi-k2.5'] td.num").last.inner_text() == "$0.0027"
    assert page.locator("table.figures").first.locator("tfoot td.num").last.inner_text() == "$0.0027"
    assert overflow(page) <= 0
    screenshot(page, "money-usage")


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_the_current_month_is_live_for_finance_and_the_workspace_admin(browser_pages, plans, acme, alice,
                                                                       finance_user, width):
    record_usage(acme, input_tokens=1_000_000, output_tokens=100_000, user_id=alice.pk)  # billed $1.17
    assert not Invoice.objects.exists()  # no rollup has run
    finance = browser_pages.open(finance_user, "/finance/", width=width)
    row = finance.locator("tr[data-tenant=acme]")
    assert "$1.17" in row.inner_text()
    screenshot(finance, "money-finance-live")
    admin = browser_pages.open(alice, "/invoices/", width=width)
    draft = Invoice.objects.get(tenant=acme)
    assert "$49.00" in admin.locator(f"tr[data-invoice='{draft.pk}']").inner_text()  # fee; credit covers usage
    assert overflow(admin) <= 0
    screenshot(admin, "money-invoices-live")
