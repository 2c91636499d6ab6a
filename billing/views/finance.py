"""Finance pages across all tenants, for users holding `billing.view_finance` (everyone else: 403)."""

from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import mark_safe

from tenants.models import Tenant

from .. import selectors, services
from ..charts import daily_chart
from ..csv_export import csv_response
from ..models import Invoice
from ..money import display_usd as usd
from .common import (
    finance_required,
    invoice_context,
    mix_bar_html,
    month_choices,
    month_context,
    month_from_request,
    smart_auto_context,
)
from .tenant import _lines_csv
from .trends import overview_trend_context, tenant_trend_context

INVOICE_LIST_LIMIT = 500


def _sort_from_request(request) -> tuple[str, bool]:
    sort = request.GET.get("sort", "billed")
    if sort not in selectors.OVERVIEW_SORTS:
        sort = "billed"
    return sort, request.GET.get("dir", "desc") != "asc"


def _share(part, whole) -> str:
    """Margin as a share of billed, for display only. A float division: the Decimal one (billing_tags.pct) was
    a third of this table's build time at 1,000 rows, and one decimal place of a ratio is not money."""
    return f"{float(part) * 100 / float(whole):.1f}%" if whole else ""


def _smart_auto_cell_html(mix: dict | None) -> str:
    """A tenant's routing mix and smart Auto's savings in one narrow cell (the table already fills the page): the
    bar, its Auto · escalated · MAX counts, and the saving with its percent, stacked."""
    if mix is None or not mix["turns"]:
        return '<td class="mix-cell muted">—</td>'
    counts = f'{mix["stayed_turns"]:,} · {mix["escalated_turns"]:,} · {mix["max_turns"]:,}'
    if mix["saved_percent"] is None:
        saved = '<span class="mix-saved muted">—</span>'
    else:
        neg = " neg" if mix["saved"] < 0 else ""
        saved = (f'<span class="mix-saved{neg}" data-saved="{mix["saved"]}">{usd(mix["saved"])}'
                 f' · {mix["saved_percent"]}%</span>')
    return (f'<td class="mix-cell">{mix_bar_html(mix, legend=False)}<span class="mix-nums">{counts}</span>'
            f'{saved}</td>')


def _overview_rows_html(rows, *, mixes: dict, root: str, month_param: str) -> str:
    """The overview's table body, built in Python: with 1,000 tenants, per-cell template variables, filters and
    {% url %} tags were most of the page's render time (bench/billing_rollup.py). Text chosen by people (slug,
    name, plan) is escaped; the other cells are numbers and ids we format ourselves."""
    parts = []
    for r in rows:
        slug, name, plan = escape(r["tenant__slug"]), escape(r["tenant__name"]), escape(r["plan_name"])
        number = (f"KC-{r['number']:06d}" if r["number"]
                  else '<span class="badge badge-warn">draft</span>')
        if r["void__created_at"]:
            number += ' <span class="badge badge-danger">void</span>'

        margin = r["margin_value"]
        neg = ' neg' if margin < 0 else ''
        parts.append(
            f'<tr data-tenant="{slug}"><td><a href="{root}tenants/{r["tenant_id"]}/?month={month_param}"'
            f' title="{slug}">{name}</a></td><td>{plan}</td>'
            f'<td><a href="{root}invoices/{r["id"]}/">{number}</a></td>'
            f'<td class="num">{r["request_count"]:,}</td><td class="num">{r["total_tokens"]:,}</td>'
            f'<td class="num">{usd(r["usage_cost"])}</td><td class="num">{usd(r["usage_billed"])}</td>'
            f'<td class="num{neg}">{usd(margin)}</td><td class="num muted{neg}">{_share(margin, r["usage_billed"])}</td>'
            f'<td class="num">{usd(r["total"])}</td>{_smart_auto_cell_html(mixes.get(r["tenant_id"]))}</tr>'
        )
    return mark_safe("\n".join(parts))  # noqa: S308 - every text value above is escaped


# (sort key or None when the column does not sort, label, numeric). Text columns sort A→Z first, figures
# largest first: what a person clicking a header expects to see at the top.
OVERVIEW_COLUMNS = [
    ("tenant", "Workspace", False), ("plan", "Plan", False), ("status", "Invoice", False),
    ("requests", "Requests", True), ("tokens", "Tokens", True), ("cost", "Provider cost", True),
    ("billed", "Billed", True), ("margin", "Margin", True), (None, "Margin %", True),
    ("total", "Invoice total", True), (None, "Smart Auto", False),
]


_ORDER_WORDS = {(True, "desc"): "largest", (True, "asc"): "smallest", (False, "asc"): "A to Z",
                (False, "desc"): "Z to A"}


def _overview_columns(*, sort: str, descending: bool, month_param: str) -> list[dict]:
    columns = []
    for key, label, numeric in OVERVIEW_COLUMNS:
        active = key == sort
        if active:
            next_dir = "asc" if descending else "desc"
        else:
            next_dir = "desc" if numeric else "asc"
        columns.append({
            "key": key, "label": label, "numeric": numeric, "active": active,
            "aria_sort": ("descending" if descending else "ascending") if active else "",
            "href": f"?month={month_param}&sort={key}&dir={next_dir}" if key else "",
            "title": f"Sort by {label.lower()}, {_ORDER_WORDS[numeric, next_dir]} first" if key else "",
        })
    return columns


@finance_required
def overview_all_tenants(request):
    month = month_from_request(request)
    sort, descending = _sort_from_request(request)
    month_param = f"{month:%Y-%m}"
    # The current month is live: rolled up now when beat's periodic rollup has not run yet (or stalled).
    services.invoice_rollup_if_stale(month=month)
    rows = selectors.invoice_overview_all_tenants(month=month, sort=sort, descending=descending)
    rolled_up_at = selectors.last_rollup_all_tenants(month=month)
    mixes = selectors.routing_mix_all_tenants(month=month, rolled_up_at=rolled_up_at)
    smart = smart_auto_context(selectors.routing_mix_totals_all_tenants(mixes))
    direction = "desc" if descending else "asc"
    context = {
        **month_context(month),
        "nav_section": "finance",
        "rows_html": _overview_rows_html(rows, mixes=mixes, root=reverse("finance_overview"),
                                         month_param=month_param),
        "totals": selectors.invoice_month_totals_all_tenants(month=month),
        "smart": smart,
        "smart_total_cell": mark_safe(_smart_auto_cell_html(smart)),  # noqa: S308 - numbers only
        "rolled_up_at": rolled_up_at,
        "columns": _overview_columns(sort=sort, descending=descending, month_param=month_param),
        "sort": sort, "descending": descending,
        # The month picker keeps the chosen sort when the month changes.
        "extra_params": [("sort", sort), ("dir", direction)],
        "extra_query": f"&sort={sort}&dir={direction}",
        **overview_trend_context(rolled_up_at=rolled_up_at),
    }
    return render(request, "finance/overview.html", context)


# The routing mix from the ledger, per tenant: (CSV column, key of selectors.smart_savings' figures).
_MIX_CSV = [("auto_stayed_turns", "stayed_turns"), ("auto_escalated_turns", "escalated_turns"),
            ("max_turns", "max_turns"), ("named_model_turns", "other_turns"),
            ("auto_billed", "actual_billed"), ("auto_billed_if_max", "counterfactual_billed"),
            ("smart_auto_saved", "saved"), ("smart_auto_saved_percent", "saved_percent")]
_MIX_CSV_COLUMNS = [column for column, _ in _MIX_CSV]


def _mix_csv_cells(mix: dict | None) -> list:
    if mix is None:  # no usage this month: no turns, nothing saved, no percent
        return [None if key == "saved_percent" else 0 for _, key in _MIX_CSV]
    return [mix[key] for _, key in _MIX_CSV]


@finance_required
def overview_csv_all_tenants(request):
    month = month_from_request(request)
    header = ["month", "tenant_slug", "tenant", "plan", "invoice_status", "invoice_number", "requests", "tokens",
              "provider_cost", "billed", "margin", "usage_amount", "fee", "credit", "total", *_MIX_CSV_COLUMNS]
    mixes = selectors.routing_mix_all_tenants(month=month,
                                              rolled_up_at=selectors.last_rollup_all_tenants(month=month))
    rows = ([f"{month:%Y-%m}", i["tenant__slug"], i["tenant__name"], i["plan_name"], i["status"],
             f"KC-{i['number']:06d}" if i["number"] else "", i["request_count"], i["total_tokens"],
             i["usage_cost"], i["usage_billed"], i["margin_value"], i["usage_amount"], i["fee"], i["credit"],
             i["total"], *_mix_csv_cells(mixes.get(i["tenant_id"]))]
            for i in selectors.invoice_overview_all_tenants(month=month, sort="tenant", descending=False))
    return csv_response(filename=f"kiwiclaw-tenants-{month:%Y-%m}.csv", header=header, rows=rows)


def _tenant(tenant_id) -> Tenant:
    try:
        return selectors.tenant_get_all_tenants(tenant_id=tenant_id)
    except Tenant.DoesNotExist:
        raise Http404("No such tenant.") from None


@finance_required
def tenant_detail_all_tenants(request, tenant_id):
    tenant = _tenant(tenant_id)
    month = month_from_request(request)
    by_day = list(selectors.usage_by_day(tenant=tenant, month=month))
    context = {
        **month_context(month),
        "nav_section": "finance",
        "tenant": tenant,
        "totals": selectors.usage_totals(tenant=tenant, month=month),
        "by_model": selectors.usage_by_model(tenant=tenant, month=month),
        "by_day": by_day,
        "chart": daily_chart(month=month, days=by_day, show_cost=True),
        "smart": smart_auto_context(selectors.smart_savings(tenant=tenant, month=month)),
        "invoices": selectors.invoice_list(tenant=tenant),
        **tenant_trend_context(tenant, request),
    }
    return render(request, "finance/tenant_detail.html", context)


@finance_required
def tenant_usage_csv_all_tenants(request, tenant_id):
    tenant = _tenant(tenant_id)
    month = month_from_request(request)
    header = ["day", "tenant", "endpoint", "provider", "requests", "estimated_requests", "input_tokens",
              "output_tokens", "cache_read_tokens", "cache_write_tokens", "provider_cost", "billed"]
    rows = ([f"{r['day']:%Y-%m-%d}", tenant.name, r["endpoint_slug"], r["provider"], r["requests"], r["estimated"],
             r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_write_tokens"], r["cost"],
             r["billed"]]
            for r in selectors.usage_by_day_and_model(tenant=tenant, month=month))
    return csv_response(filename=f"usage-{tenant.slug}-{month:%Y-%m}.csv", header=header, rows=rows)


@finance_required
def invoice_list_all_tenants(request):
    status = request.GET.get("status") or None
    if status not in (None, Invoice.STATUS_DRAFT, Invoice.STATUS_FINAL):
        status = None
    month = month_from_request(request) if request.GET.get("month") else None
    services.invoice_rollup_if_stale(month=month)
    invoices = list(selectors.invoice_list_all_tenants(month=month, status=status)[:INVOICE_LIST_LIMIT])
    return render(request, "finance/invoice_list.html",
                  {"invoices": invoices, "status": status, "month_filter": month, "nav_section": "finance",
                   "month_choices": month_choices(month), "limit": INVOICE_LIST_LIMIT})


def _invoice(invoice_id) -> Invoice:
    try:
        return selectors.invoice_get_all_tenants(invoice_id=invoice_id)
    except Invoice.DoesNotExist:
        raise Http404("No such invoice.") from None


@finance_required
def invoice_detail_all_tenants(request, invoice_id):
    return render(request, "billing/invoice_detail.html", invoice_context(
        _invoice(invoice_id), finance=True, can_manage=request.user.has_perm("billing.manage_invoices")))


@finance_required
def invoice_lines_csv_all_tenants(request, invoice_id):
    return _lines_csv(_invoice(invoice_id), with_cost=True)
