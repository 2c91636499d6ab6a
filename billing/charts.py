"""A per-day chart of billed amount (bars) and tokens (line), drawn as server-side SVG geometry.

No chart library and no CDN: the template turns these numbers into <rect> and <polyline> elements. Every day
is one <g> with a full-height transparent hit area and a <title>, so hovering anywhere in a day's column shows
its figures, even on a day whose bar is one pixel tall; tapping a day (billing/static/billing/chart.js) shows
the same figures under the chart, since a phone has no hover.

Two drawings of the same month: the wide one, and a narrow one for phones (`narrow`), whose viewBox is about a
phone's width so its text stays readable and the whole month, axes and today's bar included, fits the screen
without scrolling sideways. CSS shows one of them.
"""

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from . import money
from .months import next_month

WIDTH, HEIGHT = 720, 250
NARROW_WIDTH, NARROW_HEIGHT = 340, 230
# Margins leave room for the money labels on the left, token labels on the right, axis titles above and day
# numbers below. Text is sized in these viewBox units (billing/static/billing/billing.css), so the left margin
# grows with the longest money label.
LEFT, RIGHT, TOP, BOTTOM = 62, 54, 30, 30
NARROW_RIGHT = 40
# Roughly the advance of one digit of the tick font (12–13 viewBox units), to size the left margin.
CHAR_WIDTH = 7.5
WIDE_LABEL_DAYS = (1, 5, 10, 15, 20, 25)
NARROW_LABEL_DAYS = (1, 10, 20)


def _nice_ceiling(value: float) -> float:
    """Round an axis maximum up to 1, 2 or 5 × a power of ten, so the axis labels read well."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def money_ticks(top: float) -> list[str]:
    """The money axis's labels at 0, half and all of `top`, with one number of places for all three: enough
    for the half-way tick to show two significant digits ($0.0025, $0.00000025), as the pages' money rule
    (billing.money.display_places) does; cents from $1 up, whole dollars from $100."""
    values = [Decimal(str(top)) * Decimal(share) for share in ("0", "0.5", "1")]
    places = 0 if top >= 100 else money.display_places(values[1])
    return [f"${value:,.{places}f}" for value in values]


def _tokens_label(value: float) -> str:
    """1.5M, 250k, 900: the right axis has room for a few characters only."""
    for divisor, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if value >= divisor:
            return f"{value / divisor:,.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:,.0f}"


def _geometry(*, month, by_day, today, show_cost, max_billed, max_tokens, width, height, right, label_days):
    count = (next_month(month) - month).days
    ticks_money = money_ticks(max_billed)
    left = max(LEFT if width == WIDTH else 44, round(10 + CHAR_WIDTH * max(map(len, ticks_money))))
    plot_w, plot_h = width - left - right, height - TOP - BOTTOM
    bottom = TOP + plot_h
    slot = plot_w / count
    bars, points = [], []
    for i in range(count):
        day = month + timedelta(days=i)
        row = by_day.get(day, {})
        billed = row.get("billed") or money.ZERO
        cost = row.get("cost") if show_cost else None
        tokens = row.get("tokens") or 0
        h = plot_h * float(billed) / max_billed
        x = left + i * slot
        cost_h = plot_h * float(cost) / max_billed if cost is not None else 0
        bars.append({
            "x": round(x + slot * 0.15, 1), "y": round(bottom - h, 1), "w": round(slot * 0.7, 1), "h": round(h, 1),
            "slot_x": round(x, 1), "slot_w": round(slot, 1), "cost_y": round(bottom - cost_h, 1),
            "cost_h": round(cost_h, 1), "day": day, "billed": billed, "tokens": tokens, "cost": cost,
            "margin": row.get("margin") if show_cost else None, "requests": row.get("requests") or 0,
            "future": day > today, "today": day == today, "weekend": day.weekday() >= 5,
            "label": day.day if day.day in label_days or i == count - 1 else None,
            "label_x": round(x + slot / 2, 1),
        })
        if day <= today:
            points.append(f"{x + slot / 2:.1f},{bottom - plot_h * tokens / max_tokens:.1f}")
    ticks = [{"y": round(bottom - plot_h * share, 1), "billed": label, "tokens": _tokens_label(max_tokens * share)}
             for share, label in zip((0, 0.5, 1), ticks_money, strict=True)]
    return {
        "width": width, "height": height, "left": left, "right": width - right, "top": TOP, "bottom": bottom,
        "plot_h": plot_h, "label_y": height - 10, "title_y": TOP - 14, "bars": bars, "line": " ".join(points),
        "ticks": ticks,
    }


def daily_chart(*, month: date, days: list[dict], today: date | None = None, show_cost: bool = False) -> dict:
    """`days` rows carry `day` (datetime or date), `billed` (Decimal), `tokens` (int) and optionally `requests`,
    `cost` and `margin`; missing days are zero. In the current month the token line stops at `today` (default:
    the UTC date now): days still to come have no figures yet, which is not the same as zero.

    `show_cost` (finance only) draws the provider-cost share inside each bar; tenants never see provider cost,
    so without it the cost and margin are left out of the geometry and the tooltips altogether.

    Returns the wide drawing's geometry, with the phone's under "narrow" (same days, same scales)."""
    today = today or datetime.now(UTC).date()
    by_day = {(d["day"].date() if hasattr(d["day"], "date") else d["day"]): d for d in days}
    max_billed = _nice_ceiling(float(max((d.get("billed") or 0 for d in days), default=0)))
    max_tokens = _nice_ceiling(float(max((d.get("tokens") or 0 for d in days), default=0)))
    common = {"month": month, "by_day": by_day, "today": today, "show_cost": show_cost, "max_billed": max_billed,
              "max_tokens": max_tokens}
    wide = _geometry(**common, width=WIDTH, height=HEIGHT, right=RIGHT, label_days=WIDE_LABEL_DAYS)
    narrow = _geometry(**common, width=NARROW_WIDTH, height=NARROW_HEIGHT, right=NARROW_RIGHT,
                       label_days=NARROW_LABEL_DAYS)
    return {
        **wide, "narrow": narrow,
        "has_data": any(d.get("requests") or d.get("billed") or d.get("tokens") for d in days),
        "show_cost": show_cost,
        "max_billed": Decimal(str(max_billed)), "max_tokens": int(max_tokens),
        "max_billed_label": wide["ticks"][-1]["billed"], "max_tokens_label": wide["ticks"][-1]["tokens"],
    }
