"""Billing pages: `tenant` (a tenant's own usage and invoices) and `finance` (across tenants)."""
from datetime import date, timedelta

from django.http import Http404

from ..months import month_start, next_month, parse_month, previous_month

# How far back the month menu reaches. Older months stay reachable with the previous-month link or ?month=.
MONTH_MENU_LENGTH = 24


def month_from_request(request) -> date:
    """The ?month=YYYY-MM of the page; a malformed month is a 404 rather than a guess."""
    try:
        return parse_month(request.GET.get("month"))
    except ValueError:
        raise Http404("Choose a month as YYYY-MM.") from None


def month_choices(selected: date | None = None) -> list[dict]:
    """The month menu, newest first: a <select> works in every browser, where <input type=month> is a bare
    text box in Firefox and Safari. A selected month older than the menu is added so the menu shows it."""
    months, month = [], month_start()
    for _ in range(MONTH_MENU_LENGTH):
        months.append(month)
        month = previous_month(month)
    if selected is not None and selected not in months:
        months.append(selected)
        months.sort(reverse=True)
    return [{"value": f"{m:%Y-%m}", "label": f"{m:%B %Y}", "selected": m == selected} for m in months]


def month_context(month: date) -> dict:
    current = month_start()
    previous, following = previous_month(month), next_month(month)
    return {
        "month": month,
        "month_param": f"{month:%Y-%m}",
        "previous_month": f"{previous:%Y-%m}",
        "previous_month_label": f"{previous:%B %Y}",
        "next_month": f"{following:%Y-%m}" if following <= current else None,
        "next_month_label": f"{following:%B %Y}",
        "is_current_month": month == current,
        "current_month": f"{current:%Y-%m}",
        "month_choices": month_choices(month),
    }


def invoice_context(invoice, *, finance: bool) -> dict:
    """What the invoice page shows, for the tenant's admins and for finance alike (finance adds cost columns)."""
    lines = list(invoice.lines.all())
    return {
        "invoice": invoice, "lines": lines, "finance": finance,
        "nav_section": "finance" if finance else "invoices",
        "period_end": next_month(invoice.month) - timedelta(days=1),
        "has_estimated": any(line.estimated_count for line in lines),
    }
