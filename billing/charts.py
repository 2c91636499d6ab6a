"""A per-day chart of billed amount (bars) and tokens (line), drawn as server-side SVG geometry.

No chart library and no CDN: the template turns these numbers into <rect> and <polyline> elements. Every day
is one <g> with a full-height transparent hit area and a <title>, so hovering (or a long press) anywhere in a
day's column shows its figures, even on a day whose bar is one pixel tall.
"""

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from . import money
from .months import next_month

WIDTH, HEIGHT = 720, 250
# Margins leave room for the money labels on the left, token labels on the right, axis titles above and day
# numbers below. Text is sized in these viewBox units, so it shrinks with the chart on a phone; the labels
# stay short (compact token counts) so a larger font still fits at 375px.
LEFT, RIGHT, TOP, BOTTOM = 62, 54, 30, 30


def _nice_ceiling(value: float) -> float:
    """Round an axis maximum up to 1, 2 or 5 × a power of ten, so the axis labels read well."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _money_label(value: float, top: float) -> str:
    # Whole-cent labels read best; tiny months need more places to say anything.
    places = 2 if top >= 0.1 else 6
    return f"${Decimal(str(value)):,.{places}f}"


def _tokens_label(value: float) -> str:
    """1.5M, 250k, 900: the right axis has room for a few characters only."""
    for divisor, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if value >= divisor:
            return f"{value / divisor:,.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:,.0f}"


def daily_chart(*, month: date, days: list[dict], today: date | None = None, show_cost: bool = False) -> dict:
    """`days` rows carry `day` (datetime or date), `billed` (Decimal), `tokens` (int) and optionally `requests`,
    `cost` and `margin`; missing days are zero. In the current month the token line stops at `today` (default:
    the UTC date now): days still to come have no figures yet, which is not the same as zero.

    `show_cost` (finance only) draws the provider-cost share inside each bar; tenants never see provider cost,
    so without it the cost and margin are left out of the geometry and the tooltips altogether."""
    today = today or datetime.now(UTC).date()
    by_day = {(d["day"].date() if hasattr(d["day"], "date") else d["day"]): d for d in days}
    count = (next_month(month) - month).days
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bottom = TOP + plot_h
    slot = plot_w / count
    max_billed = _nice_ceiling(float(max((d.get("billed") or 0 for d in days), default=0)))
    max_tokens = _nice_ceiling(float(max((d.get("tokens") or 0 for d in days), default=0)))
    bars, points = [], []
    for i in range(count):
        day = month + timedelta(days=i)
        row = by_day.get(day, {})
        billed = row.get("billed") or money.ZERO
        cost = row.get("cost") if show_cost else None
        tokens = row.get("tokens") or 0
        h = plot_h * float(billed) / max_billed
        x = LEFT + i * slot
        cost_h = plot_h * float(cost) / max_billed if cost is not None else 0
        bars.append({
            "x": round(x + slot * 0.15, 1), "y": round(bottom - h, 1), "w": round(slot * 0.7, 1), "h": round(h, 1),
            "slot_x": round(x, 1), "slot_w": round(slot, 1), "cost_y": round(bottom - cost_h, 1),
            "cost_h": round(cost_h, 1), "day": day, "billed": billed, "tokens": tokens, "cost": cost,
            "margin": row.get("margin") if show_cost else None, "requests": row.get("requests") or 0,
            "future": day > today, "weekend": day.weekday() >= 5,
            "label": day.day if day.day in (1, 5, 10, 15, 20, 25) or i == count - 1 else None,
            "label_x": round(x + slot / 2, 1),
        })
        if day <= today:
            points.append(f"{x + slot / 2:.1f},{bottom - plot_h * tokens / max_tokens:.1f}")
    ticks = [{"y": round(bottom - plot_h * share, 1), "billed": _money_label(max_billed * share, max_billed),
              "tokens": _tokens_label(max_tokens * share)} for share in (0, 0.5, 1)]
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP, "bottom": bottom,
        "plot_h": plot_h,
        "label_y": HEIGHT - 10, "title_y": TOP - 14, "bars": bars, "line": " ".join(points), "ticks": ticks,
        "has_data": any(d.get("requests") or d.get("billed") or d.get("tokens") for d in days),
        "show_cost": show_cost,
        "max_billed": Decimal(str(max_billed)), "max_tokens": int(max_tokens),
        "max_billed_label": ticks[-1]["billed"], "max_tokens_label": ticks[-1]["tokens"],
    }
