"""Months as an SVG bar chart, drawn on the server: each month's billed usage is a bar split into provider cost
(below) and margin (above). The template turns these numbers into <rect>s with x/y/width/height attributes (the
Content-Security-Policy refuses style attributes and inline script); each month is a <g> with a <title>, so
hovering or a long press shows its figures."""

from __future__ import annotations

from decimal import Decimal

from .money import display_usd

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 70, 10, 16, 34


def _nice_ceiling(value: Decimal) -> Decimal:
    """Round an axis maximum up to 1, 2 or 5 × a power of ten."""
    if value <= 0:
        return Decimal(1)
    magnitude = Decimal(1).scaleb(value.adjusted())
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def trend_chart(rows: list[dict]) -> dict:
    """`rows` from billing.trends: month, cost, billed, margin. Returns the bars and axis ticks to draw."""
    top = _nice_ceiling(max((r["billed"] for r in rows), default=Decimal(0)))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    bottom = TOP + plot_h
    slot = plot_w / max(len(rows), 1)
    bar_w = max(slot * 0.64, 2)

    def y(amount: Decimal) -> float:
        return bottom - float(amount / top) * plot_h

    every = -(-len(rows) // 12)  # a label on at most 12 months, so they never overlap
    bars = []
    for i, r in enumerate(rows):
        x = LEFT + i * slot + (slot - bar_w) / 2
        cost_top, billed_top = y(r["cost"]), y(r["billed"])
        first = i == 0 or r["month"].month == 1
        bars.append({
            "month": r["month"], "x": round(x, 2), "width": round(bar_w, 2),
            "slot_x": round(LEFT + i * slot, 2), "slot_width": round(slot, 2),
            "cost_y": round(cost_top, 2), "cost_height": round(bottom - cost_top, 2),
            "margin_y": round(billed_top, 2), "margin_height": round(max(cost_top - billed_top, 0), 2),
            "label_x": round(LEFT + i * slot + slot / 2, 2),
            "label": r["month"].strftime("%b %Y" if first else "%b") if i % every == 0 else "",
            "title": (f"{r['month']:%B %Y}: billed {display_usd(r['billed'])}, provider cost "
                      f"{display_usd(r['cost'])}, margin {display_usd(r['margin'])}"),
        })
    ticks = [{"y": round(y(top * k / 4), 2), "label": display_usd(top * k / 4)} for k in range(5)]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "bottom": bottom,
            "label_y": bottom + 20, "bars": bars, "ticks": ticks, "months": len(rows)}
