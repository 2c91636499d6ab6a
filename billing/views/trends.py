"""Finance over time (`billing.view_finance`): /finance/trends/ for a range of months, overall and per workspace,
with the tier mix; the overview's and a workspace's trend come from here too."""

from datetime import date

from django.shortcuts import render
from django.urls import reverse

from .. import trends
from ..months import month_start, parse_month
from ..trend_chart import trend_chart
from .common import finance_required, month_choices


def range_from_request(request) -> tuple[date, date, str]:
    """?from=YYYY-MM&to=YYYY-MM, default the last twelve months. A bad range is said on the page (the error) and
    the default is shown instead."""
    default_start, default_end = trends.default_range()
    raw_from, raw_to = request.GET.get("from", ""), request.GET.get("to", "")
    try:
        start = parse_month(raw_from, default=default_start)
        end = parse_month(raw_to, default=default_end)
    except ValueError as exc:
        return default_start, default_end, f"{exc} The last {trends.DEFAULT_MONTHS} months are shown."
    if start > end:
        return default_start, default_end, "The range starts after it ends: choose a “from” month before “to”."
    if end > month_start():
        return default_start, default_end, "The range cannot end after the current month."
    if len(trends.months_between(start, end)) > trends.MAX_MONTHS:
        return default_start, default_end, f"Choose at most {trends.MAX_MONTHS} months."
    return start, end, ""


def _range_context(start: date, end: date, error: str) -> dict:
    return {"range_start": start, "range_end": end, "range_error": error,
            "from_choices": month_choices(start), "to_choices": month_choices(end),
            "from_param": f"{start:%Y-%m}", "to_param": f"{end:%Y-%m}"}


def overview_trend_context(*, rolled_up_at=None) -> dict:
    """The overview page's chart: the last twelve months overall, from invoice rows. Cached until the current
    month's next rollup (`rolled_up_at`): the months before hold final figures that never change."""
    start, end = trends.default_range()
    rows = trends.finance_trend_all_tenants_cached(start=start, end=end, rolled_up_at=rolled_up_at)
    return {"trend_chart": trend_chart(rows), "trends_url": reverse("finance_trends")}


def tenant_trend_context(tenant, request) -> dict:
    start, end, error = range_from_request(request)
    rows = trends.tenant_trend(tenant=tenant, start=start, end=end)
    return {"trend_rows": rows, "tenant_trend_chart": trend_chart(rows), **_range_context(start, end, error)}


@finance_required
def trends_all_tenants(request):
    start, end, error = range_from_request(request)
    rows = trends.finance_trend_all_tenants(start=start, end=end)
    workspaces, workspace_count = trends.workspace_trends_all_tenants(start=start, end=end)
    return render(request, "finance/trends.html", {
        **_range_context(start, end, error),
        "nav_section": "finance", "rows": rows, "totals": trends.trend_totals(rows), "chart": trend_chart(rows),
        "months": trends.months_between(start, end), "workspaces": workspaces, "workspace_count": workspace_count,
        "top": trends.TOP_WORKSPACES,
        "mix_rows": trends.tier_mix_by_month_all_tenants(start=start, end=end),
    }, status=400 if error else 200)
