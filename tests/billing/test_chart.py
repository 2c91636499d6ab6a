"""The daily chart (issue #15, item 12): on a phone the whole month, both axes and today's bar are on screen,
and tapping a day shows its figures as hovering does on a desktop; the money axis of a sub-cent month reads
(never "$0.000000"). Geometry checked without a browser; the pages in Chromium at 1280 and 375 px
(screenshots: artifacts/chart-*.png)."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing.charts import NARROW_WIDTH, WIDTH, daily_chart, money_ticks
from billing.months import month_start
from tests.billing.conftest import record_usage
from tests.browser import DESKTOP, PHONE, overflow, screenshot

# --- The money axis --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("top", "labels"), [
    (2.0, ["$0.00", "$1.00", "$2.00"]),
    (0.2, ["$0.00", "$0.10", "$0.20"]),
    (0.005, ["$0.0000", "$0.0025", "$0.0050"]),
    (0.0005, ["$0.00000", "$0.00025", "$0.00050"]),
    (5e-7, ["$0.00000000", "$0.00000025", "$0.00000050"]),
    (500.0, ["$0", "$250", "$500"]),
    (5000.0, ["$0", "$2,500", "$5,000"]),
])
def test_money_ticks_show_the_half_way_tick_with_two_significant_digits(top, labels):
    assert money_ticks(top) == labels


def test_a_sub_cent_month_never_reads_zero_on_its_axis():
    """A month of one $0.00000031 request: the top of the axis is $0.0000005, shown as such, not $0.000000."""
    chart = daily_chart(month=date(2026, 11, 1), today=date(2026, 11, 3),
                        days=[{"day": date(2026, 11, 2), "billed": Decimal("0.00000031"), "tokens": 3}])
    for drawing in (chart, chart["narrow"]):
        labels = [t["billed"] for t in drawing["ticks"]]
        assert labels == ["$0.00000000", "$0.00000025", "$0.00000050"]
        # The left margin holds the longest label (about 7.5 units a character at the chart's font size).
        assert drawing["left"] >= 7.5 * len(labels[-1])


def test_the_narrow_drawing_keeps_every_day_inside_its_box():
    days = [{"day": date(2026, 12, d), "billed": Decimal(d), "tokens": d * 1000, "requests": 1} for d in (1, 15, 31)]
    chart = daily_chart(month=date(2026, 12, 1), days=days, today=date(2026, 12, 31))
    narrow = chart["narrow"]
    assert (chart["width"], narrow["width"]) == (WIDTH, NARROW_WIDTH)
    assert len(narrow["bars"]) == 31
    last = narrow["bars"][-1]
    assert last["today"] and last["h"] > 0
    assert narrow["left"] <= narrow["bars"][0]["slot_x"] and last["slot_x"] + last["slot_w"] <= narrow["right"] + 0.1
    assert [b["label"] for b in narrow["bars"] if b["label"]] == [1, 10, 20, 31]
    assert [t["tokens"] for t in narrow["ticks"]] == ["0", "25k", "50k"]


# --- In the browser --------------------------------------------------------------------------------------------

@pytest.fixture
def todays_usage(acme, alice, budget_redis):
    """Today, in acme: three small requests ($0.0001272 + $0.0004 + $0.0032), so the axis is sub-cent."""
    record_usage(acme, endpoint="kimi-k2.5", input_tokens=12, output_tokens=40, user_id=alice.pk)  # $0.0001272
    record_usage(acme, endpoint="kimi-k2.5", input_tokens=500, output_tokens=33, cost=Decimal("0.0004"),
                 user_id=alice.pk)
    record_usage(acme, endpoint="claude-opus-4-6", input_tokens=140, output_tokens=100, user_id=alice.pk)  # 0.0032
    return datetime.now(UTC).date()


def _inside(box, width) -> bool:
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_on_a_phone_the_month_axes_and_today_are_on_screen_and_a_tap_shows_the_day(browser_pages, acme, alice,
                                                                                    todays_usage):
    page = browser_pages.open(alice, "/usage/", width=PHONE, has_touch=True)
    wide, narrow = page.locator("svg[data-chart=daily]"), page.locator("svg[data-chart=daily-narrow]")
    assert not wide.is_visible() and narrow.is_visible()
    assert _inside(narrow.bounding_box(), PHONE) and overflow(page) <= 0
    today = narrow.locator(f"g.day[data-day='{todays_usage:%Y-%m-%d}']")
    assert _inside(today.locator("rect.bar").bounding_box(), PHONE)  # today's bar is drawn and on screen
    for tick in narrow.locator("text.tick-money").all():
        assert _inside(tick.bounding_box(), PHONE), tick.inner_text()
    money_labels = narrow.locator("text.tick-money").all_text_contents()
    assert money_labels == ["$0.0000", "$0.0025", "$0.0050"]  # today, the top day, billed $0.0048: sub-cent
    # Text a person can read: at least 10 px on screen.
    assert narrow.locator("text.tick-money").first.bounding_box()["height"] >= 10
    readout = page.locator("[data-chart-readout]")
    assert readout.is_hidden()
    today.tap()
    assert readout.is_visible()
    assert readout.inner_text() == today.locator("title").text_content()
    # Billed by hand: provider cost $0.0037272 plus the Pro plan's 30 % markup = $0.00484536.
    assert acme.plan.markup_percent == 30
    assert readout.inner_text().endswith("(today): $0.0048 billed · 825 tokens · 3 requests")
    assert "selected" in today.get_attribute("class")
    screenshot(page, "chart-usage-tapped")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_on_a_desktop_the_wide_chart_shows_and_a_click_also_shows_the_day(browser_pages, alice, todays_usage):
    page = browser_pages.open(alice, "/usage/", width=DESKTOP)
    wide, narrow = page.locator("svg[data-chart=daily]"), page.locator("svg[data-chart=daily-narrow]")
    assert wide.is_visible() and not narrow.is_visible()
    day = wide.locator(f"g.day[data-day='{todays_usage:%Y-%m-%d}']")
    day.hover()  # the native tooltip is the <title>; its text is what a click shows too
    day.click()
    assert page.locator("[data-chart-readout]").inner_text() == day.locator("title").text_content()
    screenshot(page, "chart-usage")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_finance_sees_the_phone_chart_with_provider_cost(browser_pages, acme, todays_usage, finance_user):
    page = browser_pages.open(finance_user, f"/finance/tenants/{acme.pk}/?month={month_start():%Y-%m}", width=PHONE)
    narrow = page.locator("svg[data-chart=daily-narrow]")
    assert narrow.is_visible() and _inside(narrow.bounding_box(), PHONE) and overflow(page) <= 0
    assert "provider cost" in narrow.locator(f"g.day[data-day='{todays_usage:%Y-%m-%d}'] title").text_content()
    screenshot(page, "chart-finance")
