"""Finance over time in a real Chromium at 1280 and 375 px: the overview's twelve-month chart, the trends page's
range picker, chart and tables. Screenshots: artifacts/trends-*-<width>.png."""

from datetime import UTC, date, datetime

import pytest

from billing.services import invoice_rollup
from tests.billing.conftest import record_usage_at
from tests.browser import DESKTOP, PHONE, overflow, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server_url(server_url, budget_redis):
    return server_url


@pytest.fixture
def months_of_usage(plans, acme, globex):
    # kimi 1,000,000 input = $0.60 cost; acme on Pro (30%): Jan $0.78, Feb $1.56; globex on Free (50%): Feb $0.90.
    for month, count in ((date(2025, 1, 1), 1), (date(2025, 2, 1), 2)):
        for _ in range(count):
            record_usage_at(acme, datetime(month.year, month.month, 9, tzinfo=UTC), input_tokens=1_000_000,
                            output_tokens=0)
    record_usage_at(globex, datetime(2025, 2, 9, tzinfo=UTC), input_tokens=1_000_000, output_tokens=0)
    invoice_rollup(month=date(2025, 1, 1))
    invoice_rollup(month=date(2025, 2, 1))


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_trends_by_range_with_a_chart_and_month_over_month(browser_pages, months_of_usage, finance_user, width):
    page = browser_pages.open(finance_user, "/finance/", width=width)
    assert page.locator("[data-overview-trend] g.month").count() == 12
    page.get_by_role("link", name="Trends by month and workspace").click()
    page.wait_for_url("**/finance/trends/")
    page.select_option("#range-from", "2025-01")
    page.select_option("#range-to", "2025-02")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/finance/trends/?from=2025-01&to=2025-02")
    assert page.locator("[data-trend-chart] g.month").count() == 2
    feb = page.locator("table[data-trend] tr[data-month='2025-02']")
    # Feb billed $1.56 + $0.90 = $2.46 against Jan's $0.78: +215.4%.
    assert "$2.46" in feb.inner_text() and feb.locator("[data-change]").inner_text() == "+215.4%"
    title = page.locator("g.month[data-month='2025-02'] > title").text_content()
    assert title == "February 2025: billed $2.46, provider cost $1.80, margin $0.66"
    assert page.locator("table[data-workspace-trends] tbody tr").count() == 2
    assert overflow(page) <= 0
    screenshot(page, "trends")
