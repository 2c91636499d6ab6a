"""A tenant's own usage and invoices. Admins see the whole tenant; members see only their own usage.

Tenants never see provider cost or margin: only billed amounts.
"""

from django.http import Http404
from django.shortcuts import render
from django.utils.http import urlencode

from tenants.access import tenant_admin_required, tenant_required

from .. import selectors, services
from ..charts import daily_chart
from ..csv_export import csv_response
from ..models import END_USER_MAX_LENGTH, Invoice
from .common import invoice_context, month_context, month_from_request, smart_auto_context


def end_user_from_request(request) -> tuple[str | None, str]:
    """The `end_user` filter of the usage pages: (the id to filter by or None, an error for people or "")."""
    value = request.GET.get("end_user", "").strip()
    if len(value) > END_USER_MAX_LENGTH:
        return None, f"An end-user id has at most {END_USER_MAX_LENGTH} characters."
    return value or None, ""


@tenant_required
def usage(request):
    month = month_from_request(request)
    end_user, end_user_error = end_user_from_request(request)
    tenant, membership = request.tenant, request.membership
    user_id = None if membership.is_admin else request.user.pk
    scope = {"tenant": tenant, "month": month, "end_user": end_user}
    by_day = list(selectors.usage_by_day(**scope, user_id=user_id))
    context = {
        **month_context(month),
        "nav_section": "usage",
        "is_admin": membership.is_admin,
        "end_user": end_user or "",
        "end_user_error": end_user_error,
        "extra_params": [("end_user", end_user)] if end_user else [],
        "extra_query": "&" + urlencode({"end_user": end_user}) if end_user else "",
        "totals": selectors.usage_totals(**scope, user_id=user_id),
        "by_model": selectors.usage_by_model(**scope, user_id=user_id),
        "by_day": by_day,
        "chart": daily_chart(month=month, days=by_day),
        "smart": smart_auto_context(selectors.smart_savings(**scope, user_id=user_id)),
    }
    if membership.is_admin:
        context["by_member"] = selectors.usage_by_member(**scope)
        context["by_api_key"] = selectors.usage_by_api_key(**scope)
        if context["is_current_month"] and end_user is None:
            context["budget"] = selectors.tenant_budget_status(tenant=tenant)
    return render(request, "billing/usage.html", context)


USAGE_CSV_HEADER = ["day", "endpoint", "provider", "member", "api_key", "end_user", "requests",
                    "estimated_requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                    "billed"]


@tenant_admin_required
def usage_csv(request):
    """The workspace's month per day, model, member, API key and end-user id, for its admins. Billed amounts only
    (never provider cost); names, key names and end-user ids that start like a formula are defused."""
    month = month_from_request(request)
    end_user, _ = end_user_from_request(request)
    rows = ([f"{r['day']:%Y-%m-%d}", r["endpoint_slug"], r["provider"], r["member"], r["api_key"], r["end_user"],
             r["requests"], r["estimated"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
             r["cache_write_tokens"], r["billed"]]
            for r in selectors.usage_export_rows(tenant=request.tenant, month=month, end_user=end_user))
    return csv_response(filename=f"usage-{request.tenant.slug}-{month:%Y-%m}.csv", header=USAGE_CSV_HEADER,
                        rows=rows)


@tenant_admin_required
def invoice_list(request):
    # The current month's draft is live: rolled up now when the periodic rollup has not caught up.
    services.invoice_rollup_if_stale(tenant=request.tenant)
    invoices = selectors.invoice_list(tenant=request.tenant)
    return render(request, "billing/invoice_list.html", {"invoices": invoices, "nav_section": "invoices"})


def _tenant_invoice(request, invoice_id) -> Invoice:
    try:
        return selectors.invoice_get(tenant=request.tenant, invoice_id=invoice_id)
    except Invoice.DoesNotExist:
        raise Http404("No such invoice.") from None


@tenant_admin_required
def invoice_detail(request, invoice_id):
    invoice = _tenant_invoice(request, invoice_id)
    if not invoice.is_final and services.invoice_rollup_if_stale(month=invoice.month, tenant=request.tenant):
        invoice = _tenant_invoice(request, invoice_id)
    return render(request, "billing/invoice_detail.html", invoice_context(invoice, finance=False))


@tenant_admin_required
def invoice_lines_csv(request, invoice_id):
    invoice = _tenant_invoice(request, invoice_id)
    return _lines_csv(invoice, with_cost=False)


def _lines_csv(invoice: Invoice, *, with_cost: bool):
    header = ["invoice", "tenant", "month", "status", "endpoint", "provider", "requests", "estimated_requests",
              "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]
    header += ["provider_cost", "billed_exact", "amount"] if with_cost else ["billed_exact", "amount"]
    rows = []
    for line in invoice.lines.all():
        row = [invoice.display_number, invoice.tenant.name, f"{invoice.month:%Y-%m}", invoice.status,
               line.endpoint_slug, line.provider, line.request_count, line.estimated_count, line.input_tokens,
               line.output_tokens, line.cache_read_tokens, line.cache_write_tokens]
        row += [line.cost, line.billed, line.amount] if with_cost else [line.billed, line.amount]
        rows.append(row)
    name = f"invoice-{invoice.tenant.slug}-{invoice.month:%Y-%m}-{invoice.display_number}.csv"
    return csv_response(filename=name, header=header, rows=rows)
