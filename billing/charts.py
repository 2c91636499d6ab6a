"""A per-day chart of billed amount (bars) and tokens (line), drawn as server-side SVG geometry.

No chart library and no CDN: the template turns these numbers into <rect> and <polyline> elements.
"""

import math
from datetime import date, timedelta
from decimal import Decimal

from . import money
from .months import next_month

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 56, 12, 28


def _nice_ceiling(value: float) -> float:
    """Round an axis maximum up to 1, 2 or 5 × a power of ten, so the axis labels read well."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def daily_chart(*, month: date, days: list[dict]) -> dict:
    """`days` rows carry `day` (datetime or date), `billed` (Decimal) and `tokens` (int); missing days are zero."""
    by_day = {(d["day"].date() if hasattr(d["day"], "date") else d["day"]): d for d in days}
    count = (next_month(month) - month).days
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / count
    max_billed = _nice_ceiling(float(max((d.get("billed") or 0 for d in days), default=0)))
    max_tokens = _nice_ceiling(float(max((d.get("tokens") or 0 for d in days), default=0)))
    bars, points = [], []
    for i in range(count):
        day = month + timedelta(days=i)
        row = by_day.get(day, {})
        billed = row.get("billed") or money.ZERO
        tokens = row.get("tokens") or 0
        h = plot_h * float(billed) / max_billed
        x = LEFT + i * slot
        bars.append({"x": round(x + slot * 0.15, 1), "y": round(TOP + plot_h - h, 1), "w": round(slot * 0.7, 1),
                     "h": round(h, 1), "day": day, "billed": billed, "tokens": tokens,
                     "label": day.day if day.day in (1, 5, 10, 15, 20, 25) or i == count - 1 else None,
                     "label_x": round(x + slot / 2, 1)})
        points.append(f"{x + slot / 2:.1f},{TOP + plot_h - plot_h * tokens / max_tokens:.1f}")
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP,
        "bottom": TOP + plot_h, "label_y": HEIGHT - 8, "bars": bars, "line": " ".join(points),
        "max_billed": Decimal(str(max_billed)), "max_tokens": int(max_tokens),
        # Whole-cent labels read best; tiny months need more places to say anything.
        "max_billed_label": f"${Decimal(str(max_billed)):,.{2 if max_billed >= 0.1 else 6}f}",
        "mid_y": TOP + plot_h / 2, "mid_billed": Decimal(str(max_billed / 2)), "mid_tokens": int(max_tokens / 2),
    }
