"""Billing pages: `tenant` (a tenant's own usage and invoices) and `finance` (across tenants)."""
from datetime import date, timedelta
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils import timezone
from django.utils.safestring import mark_safe

from ..models import CreditNote, InvoiceVoid
from ..money import ZERO, format_usd
from ..months import month_bounds, month_start, next_month, parse_month, previous_month

FINANCE_PERM = "billing.view_finance"


def finance_required(view):
    """Finance pages across all tenants: `billing.view_finance`, else 403 (anonymous users log in first)."""
    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.has_perm(FINANCE_PERM):
            raise PermissionDenied("Only finance can see this page.")
        return view(request, *args, **kwargs)

    return wrapper


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


def invoice_context(invoice, *, finance: bool, can_manage: bool = False) -> dict:
    """What the invoice page shows, for the tenant's admins and for finance alike (finance adds cost columns, and
    with `can_manage` the finalize, void and credit-note actions). A void and credit notes are shown to both:
    they are documents the customer receives."""
    lines = list(invoice.lines.all())
    void = InvoiceVoid.objects.filter(invoice=invoice).first() if invoice.is_final else None
    notes = list(CreditNote.objects.filter(invoice=invoice).prefetch_related("lines")) if invoice.is_final else []
    credited = -sum((note.total for note in notes), ZERO)
    left = ZERO if void else invoice.total - credited
    ended = month_bounds(invoice.month)[1] <= timezone.now()
    return {
        "invoice": invoice, "lines": lines, "finance": finance,
        "nav_section": "finance" if finance else "invoices",
        "period_end": next_month(invoice.month) - timedelta(days=1),
        "has_estimated": any(line.estimated_count for line in lines),
        "void": void, "credit_notes": notes, "credited": credited, "net_due": left,
        "can_finalize": can_manage and not invoice.is_final and ended,
        "can_void": can_manage and invoice.is_final and not void and not notes,
        "can_credit": can_manage and invoice.is_final and not void and left > 0,
    }


# The routes of the mix, in the order the bar and the tables show them: (key of the figures, label, CSS class).
MIX_PARTS = [
    ("stayed_turns", "Auto", "mix-auto"),
    ("escalated_turns", "Escalated to MAX", "mix-escalated"),
    ("max_turns", "MAX", "mix-max"),
    ("other_turns", "Named model", "mix-other"),
]


def mix_label(figures: dict) -> str:
    """The routing mix in words, for screen readers and tooltips."""
    return ", ".join(f"{label} {figures[key]:,}" for key, label, _ in MIX_PARTS)


def mix_bar_html(figures: dict, *, legend: bool = True) -> str:
    """The routing mix as a stacked bar, each route's width its share of all turns (a float: a drawing, not a
    figure), with a legend of the counts. Built in Python because the finance overview draws one per tenant in
    its Python-built rows; every piece of text here is ours or a number. An SVG whose rects are placed with x=
    and width= attributes: the Content-Security-Policy refuses style="" attributes."""
    turns = figures["turns"]
    if not turns:
        return ""
    data = " ".join(f'data-{key.removesuffix("_turns")}="{figures[key]}"' for key, _, _ in MIX_PARTS)
    segments, x = [], 0.0
    for key, _, css in MIX_PARTS:
        if figures[key]:
            width = figures[key] * 100 / turns
            segments.append(f'<rect class="{css}" x="{x:.2f}%" width="{width:.2f}%" height="100%"/>')
            x += width
    label = mix_label(figures)
    bar = (f'<svg class="mix-bar" role="img" aria-label="{label}" {data}><title>{label}</title>'
           f'{"".join(segments)}</svg>')
    if legend:
        items = "".join(f'<span><span class="swatch {css}"></span>{label} {figures[key]:,}</span>'
                        for key, label, css in MIX_PARTS if figures[key])
        bar += f'<span class="legend mix-legend" aria-hidden="true">{items}</span>'
    return mark_safe(bar)  # noqa: S308 - labels are constants, the rest numbers


def smart_auto_context(figures: dict) -> dict:
    """What the smart Auto card shows, from `selectors.smart_savings`: amounts through `format_usd`, a negative
    saving said as an extra cost (so no "$-0.12" and no "saved −3%"), and the mix bar."""
    saved, percent = figures["saved"], figures["saved_percent"]
    return {
        **figures,
        "cost_more": saved < 0,
        "saved_usd": format_usd(abs(saved)),
        "saved_percent_shown": abs(percent) if percent is not None else None,
        "counterfactual_usd": format_usd(figures["counterfactual_billed"]),
        "actual_usd": format_usd(figures["actual_billed"]),
        "bar_html": mix_bar_html(figures),
    }
