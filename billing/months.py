"""UTC calendar months, the unit of spend, caps and invoices. A month is the `date` of its first day."""

import re
from datetime import UTC, date, datetime

from django.utils import timezone

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


def month_start(moment: datetime | None = None) -> date:
    """The UTC month containing `moment` (default: now)."""
    moment = moment or timezone.now()
    if timezone.is_aware(moment):
        moment = moment.astimezone(UTC)
    return date(moment.year, moment.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def previous_month(month: date) -> date:
    return date(month.year - 1, 12, 1) if month.month == 1 else date(month.year, month.month - 1, 1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC calendar month as aware datetimes."""
    end = next_month(month)
    return datetime(month.year, month.month, 1, tzinfo=UTC), datetime(end.year, end.month, 1, tzinfo=UTC)


def parse_month(value: str | None, *, default: date | None = None) -> date:
    """'2026-03' → date(2026, 3, 1). Empty means `default` (the current month); anything else raises ValueError."""
    if not value:
        return default or month_start()
    match = _MONTH_RE.match(value.strip())
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
        raise ValueError("Choose a month as YYYY-MM.")
    return date(int(match.group(1)), int(match.group(2)), 1)
