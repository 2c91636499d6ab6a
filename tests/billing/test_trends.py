"""Finance over time: month-over-month figures for a range of months, overall and per workspace, checked
against hand calculations; the tier mix; the overview's chart; bad ranges said clearly."""

import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing import trends
from billing.invoice_actions import credit_note_issue, invoice_finalize, invoice_void
from billing.services import invoice_rollup
from tests.billing.conftest import record_usage_at

JAN, FEB, MAR = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)


def _at(month: date, day=10):
    return datetime(month.year, month.month, day, 12, tzinfo=UTC)


@pytest.fixture
def three_months(acme, globex):
    """kimi 1,000,000 input = $0.60 cost per row. acme (Pro, 30%): Jan 1 row, Feb 2, Mar 3 → billed $0.78,
    $1.56, $2.34. globex (Free, 50%): Feb 1 row → $0.90."""
    for month, count in ((JAN, 1), (FEB, 2), (MAR, 3)):
        for _ in range(count):
            record_usage_at(acme, _at(month), input_tokens=1_000_000, output_tokens=0)
        invoice_rollup(month=month)
    record_usage_at(globex, _at(FEB), input_tokens=1_000_000, output_tokens=0)
    invoice_rollup(month=FEB)


def test_the_overall_trend_is_month_by_month_with_changes(three_months):
    rows = trends.finance_trend_all_tenants(start=date(2024, 12, 1), end=MAR)
    assert [r["month"] for r in rows] == [date(2024, 12, 1), JAN, FEB, MAR]  # an empty month is a zero row
    dec, jan, feb, mar = rows
    assert (dec["billed"], dec["workspaces"], dec["billed_change"]) == (0, 0, None)
    assert (jan["cost"], jan["billed"], jan["margin"]) == (Decimal("0.60"), Decimal("0.78"), Decimal("0.18"))
    assert jan["billed_change"] is None  # from zero: no percent
    # Feb: acme 2 × 0.60 + globex 0.60 = 1.80 cost; billed 1.56 + 0.90 = 2.46; margin 0.66.
    assert (feb["cost"], feb["billed"], feb["margin"], feb["workspaces"]) == (
        Decimal("1.80"), Decimal("2.46"), Decimal("0.66"), 2)
    assert feb["billed_change"] == Decimal("215.4")  # (2.46 − 0.78) / 0.78 = 215.38…%
    assert mar["billed_change"] == Decimal("-4.9")   # (2.34 − 2.46) / 2.46 = −4.878…%
    assert feb["margin_percent"] == Decimal("26.8")  # 0.66 / 2.46
    totals = trends.trend_totals(rows)
    assert (totals["cost"], totals["billed"], totals["margin"]) == (Decimal("4.20"), Decimal("5.58"), Decimal("1.38"))


def test_per_workspace_trends_rank_by_billed_and_compare_the_last_two_months(three_months, acme, globex):
    rows, count = trends.workspace_trends_all_tenants(start=JAN, end=MAR)
    assert count == 2 and [r["tenant_id"] for r in rows] == [acme.pk, globex.pk]
    acme_row, globex_row = rows
    assert acme_row["months"] == [Decimal("0.78"), Decimal("1.56"), Decimal("2.34")]
    assert acme_row["last_change"] == Decimal("50.0")  # 2.34 / 1.56 − 1
    assert (acme_row["billed"], acme_row["margin"]) == (Decimal("4.68"), Decimal("1.08"))
    assert globex_row["months"] == [None, Decimal("0.90"), None]
    assert globex_row["last_change"] == Decimal("-100.0")  # nothing billed in March


def test_a_workspace_trend_has_its_tier_mix_from_the_ledger(three_months, acme):
    from billing.models import UsageRecord as U

    base = record_usage_at(acme, _at(MAR, 20), input_tokens=0, output_tokens=0)  # a named-model row
    # Two smart-Auto rows like it (the ledger refuses UPDATE: new rows with the routing facts).
    U.objects.create(**{f.name: getattr(base, f.name) for f in U._meta.fields
                        if f.name not in ("id", "key", "requested_tier", "route_escalated", "tier")},
                     key="chat:escalated-1", requested_tier="auto", route_escalated=True, tier="max")
    U.objects.create(**{f.name: getattr(base, f.name) for f in U._meta.fields
                        if f.name not in ("id", "key", "requested_tier", "route_escalated")},
                     key="chat:stayed-1", requested_tier="auto", route_escalated=False)
    rows = trends.tenant_trend(tenant=acme, start=JAN, end=MAR)
    assert [r["billed"] for r in rows] == [Decimal("0.78"), Decimal("1.56"), Decimal("2.34")]
    mar = rows[-1]["mix"]
    assert (mar["auto_turns"], mar["escalated_turns"], mar["stayed_turns"]) == (2, 1, 1)
    assert rows[0]["mix"]["auto_turns"] == 0


def test_void_invoices_leave_the_invoiced_total_and_credit_notes_are_netted(three_months, acme, globex,
                                                                            finance_user):
    jan = invoice_finalize(invoice=acme.invoices.get(month=JAN), actor=finance_user)
    feb_globex = invoice_finalize(invoice=globex.invoices.get(month=FEB), actor=finance_user)
    invoice_void(invoice=feb_globex, reason="Test account", actor=finance_user)
    credit_note_issue(invoice=jan, reason="Goodwill", lines=[("Goodwill", Decimal("10.00"))], actor=finance_user)
    rows = {r["month"]: r for r in trends.finance_trend_all_tenants(start=JAN, end=FEB)}
    assert rows[JAN]["total"] == Decimal("49.00") and rows[JAN]["credited"] == Decimal("10.00")
    assert rows[FEB]["total"] == Decimal("49.00")  # acme's fee; globex's $0.90 invoice is void
    assert rows[FEB]["billed"] == Decimal("2.46")  # ... but its usage still counts


def test_the_trends_page_shows_the_range_chart_and_workspaces(client, three_months, finance_user):
    client.force_login(finance_user)
    body = client.get("/finance/trends/?from=2025-01&to=2025-03").content.decode()
    assert "January 2025 – March 2025" in body
    assert re.search(r'<tr data-month="2025-02">.*?\+215.4%', body, re.S)
    assert body.count('<g class="month"') == 3 and 'data-month="2025-03"' in body
    assert "Acme Corp" in body and "Globex" in body


@pytest.mark.parametrize(("query", "error"), [
    ("from=2025-03&to=2025-01", "starts after it ends"),
    ("from=2025-13", "Choose a month as YYYY-MM."),
    ("from=2020-01&to=2025-01", "at most 36 months"),
    ("to=2999-01", "cannot end after the current month"),
])
def test_a_bad_range_is_said_and_the_last_twelve_months_shown(client, finance_user, query, error):
    client.force_login(finance_user)
    response = client.get(f"/finance/trends/?{query}")
    body = response.content.decode()
    assert response.status_code == 400 and error in body
    assert body.count('<g class="month"') == 12


def test_the_overview_has_a_twelve_month_chart_and_stays_lean(client, three_months, finance_user,
                                                              django_assert_max_num_queries):
    from billing.months import month_start

    invoice_rollup(month=month_start())  # beat's rollup ran: the page reads, it does not roll up
    client.force_login(finance_user)
    with django_assert_max_num_queries(14):
        body = client.get("/finance/").content.decode()
    assert "data-overview-trend" in body and body.count('<g class="month"') == 12


def test_trends_need_finance(client, alice):
    client.force_login(alice)
    assert client.get("/finance/trends/").status_code == 403


def test_the_workspace_drill_down_shows_its_months(client, three_months, finance_user, acme):
    client.force_login(finance_user)
    body = client.get(f"/finance/tenants/{acme.pk}/?month=2025-03&from=2025-01&to=2025-03").content.decode()
    section = body.split("data-tenant-trend")[1].split("</section>")[0]
    assert '<tr data-month="2025-03">' in section and "+50.0%" in section and "$2.34" in section
