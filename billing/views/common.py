from datetime import date

from django.http import Http404

from ..months import month_start, next_month, parse_month, previous_month


def month_from_request(request) -> date:
    """The ?month=YYYY-MM of the page; a malformed month is a 404 rather than a guess."""
    try:
        return parse_month(request.GET.get("month"))
    except ValueError:
        raise Http404("Choose a month as YYYY-MM.") from None


def month_context(month: date) -> dict:
    current = month_start()
    return {
        "month": month,
        "month_param": f"{month:%Y-%m}",
        "previous_month": f"{previous_month(month):%Y-%m}",
        "next_month": f"{next_month(month):%Y-%m}" if next_month(month) <= current else None,
        "is_current_month": month == current,
    }
