"""Finance pages across all tenants, for users holding `billing.view_finance` (everyone else: 403)."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import mark_safe

from tenants.models import Tenant

from .. import selectors
from ..charts import daily_chart
from ..csv_export import csv_response
from ..models import Invoice
from ..templatetags.billing_tags import usd
from .common import month_context, month_from_request
from .tenant import _lines_csv

FINANCE_PERM = "billing.view_finance"


def finance_required(view):
    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.has_perm(FINANCE_PERM):
            raise PermissionDenied("Only finance can see this page.")
        return view(request, *args, **kwargs)

    return wrapper


def _sort_from_request(request) -> tuple[str, bool]:
    sort = request.GET.get("sort", "billed")
    if sort not in selectors.OVERVIEW_SORTS:
        sort = "billed"
    return sort, request.GET.get("dir", "desc") != "asc"


def _overview_rows_html(rows, *, root: str, month_param: str) -> str:
    """The overview's table body, built in Python: with 1,000 tenants, per-cell template variables, filters and
    {% url %} tags were most of the page's render time (bench/billing_rollup.py). Text chosen by people (slug,
    name, plan) is escaped; the other cells are numbers and ids we format ourselves."""
    parts = []
    for r in rows:
        slug, name, plan = escape(r["tenant__slug"]), escape(r["tenant__name"]), escape(r["plan_name"])
        number = f"KC-{r['number']:06d}" if r["number"] else "draft"
        parts.append(
            f'<tr data-tenant="{slug}"><td><a href="{root}tenants/{r["tenant_id"]}/?month={month_param}">{name}</a>'
            f'</td><td>{plan}</td><td><a href="{root}invoices/{r["id"]}/">{number}</a></td>'
            f'<td class="num">{r["request_count"]:,}</td><td class="num">{r["total_tokens"]:,}</td>'
            f'<td class="num">{usd(r["usage_cost"])}</td><td class="num">{usd(r["usage_billed"])}</td>'
            f'<td class="num">{usd(r["margin_value"])}</td><td class="num">{usd(r["total"])}</td></tr>'
        )
    return mark_safe("\n".join(parts))  # noqa: S308 - every text value above is escaped


@finance_required
def overview_all_tenants(request):
    month = month_from_request(request)
    sort, descending = _sort_from_request(request)
    columns = [("tenant", "Tenant"), ("plan", "Plan"), ("status", "Invoice"), ("requests", "Requests"),
               ("tokens", "Tokens"), ("cost", "Provider cost"), ("billed", "Billed"), ("margin", "Margin"),
               ("total", "Invoice total")]
    rows = selectors.invoice_overview_all_tenants(month=month, sort=sort, descending=descending)
    context = {
        **month_context(month),
        "nav_section": "finance",
        "rows_html": _overview_rows_html(rows, root=reverse("finance_overview"), month_param=f"{month:%Y-%m}"),
        "totals": selectors.invoice_month_totals_all_tenants(month=month),
        "rolled_up_at": selectors.last_rollup_all_tenants(month=month),
        "columns": [{"key": key, "label": label, "active": key == sort,
                     "numeric": key not in ("tenant", "plan", "status"),
                     "dir": "asc" if key == sort and descending else "desc"} for key, label in columns],
        "sort": sort, "descending": descending,
    }
    return render(request, "finance/overview.html", context)


@finance_required
def overview_csv_all_tenants(request):
    month = month_from_request(request)
    header = ["month", "tenant_slug", "tenant", "plan", "invoice_status", "invoice_number", "requests", "tokens",
              "provider_cost", "billed", "margin", "usage_amount", "fee", "credit", "total"]
    rows = ([f"{month:%Y-%m}", i["tenant__slug"], i["tenant__name"], i["plan_name"], i["status"],
             f"KC-{i['number']:06d}" if i["number"] else "", i["request_count"], i["total_tokens"],
             i["usage_cost"], i["usage_billed"], i["margin_value"], i["usage_amount"], i["fee"], i["credit"],
             i["total"]]
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
        "chart": daily_chart(month=month, days=by_day),
        "invoices": selectors.invoice_list(tenant=tenant),
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
    invoices = selectors.invoice_list_all_tenants(month=month, status=status)[:500]
    return render(request, "finance/invoice_list.html",
                  {"invoices": invoices, "status": status, "month_filter": month, "nav_section": "finance"})


def _invoice(invoice_id) -> Invoice:
    try:
        return selectors.invoice_get_all_tenants(invoice_id=invoice_id)
    except Invoice.DoesNotExist:
        raise Http404("No such invoice.") from None


@finance_required
def invoice_detail_all_tenants(request, invoice_id):
    invoice = _invoice(invoice_id)
    return render(request, "billing/invoice_detail.html",
                  {"invoice": invoice, "lines": invoice.lines.all(), "nav_section": "finance", "finance": True})


@finance_required
def invoice_lines_csv_all_tenants(request, invoice_id):
    return _lines_csv(_invoice(invoice_id), with_cost=True)
