"""/staff/: the platform admins' console across all tenants (superusers, or tenants.manage_tenants).
Every change goes through the services, which write exactly one audit row each.

Suspending a workspace and changing its plan ask first: the console's buttons post without `confirm=yes`, and the
answer is a confirmation page naming the workspace and the change (no JavaScript: the page's CSP allows none
inline), whose button posts again with it."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ..access import platform_admin_required
from ..audit_labels import action_label
from ..forms import TenantPlanForm, TenantStatusForm
from ..models import Plan, Tenant
from ..selectors import (
    audit_list_all_tenants,
    plan_list,
    tenant_choices_all_tenants,
    tenant_get_all_tenants,
    tenant_list_all_tenants,
)
from ..services import tenant_change_plan, tenant_set_status
from ._util import get_or_404, safe_next


@platform_admin_required
def staff_console_all_tenants(request):
    query = request.GET.get("q", "").strip()
    tenants = tenant_list_all_tenants()
    if query:
        tenants = tenants.filter(Q(name__icontains=query) | Q(slug__icontains=query))
    page = Paginator(tenants, 50).get_page(request.GET.get("page"))
    return render(request, "staff/console.html", {"page": page, "query": query, "plans": list(plan_list()),
                                                  "staff_section": "workspaces"})


def _confirmed(request) -> bool:
    return request.POST.get("confirm") == "yes"


def _confirm_page(request, *, kind: str, title: str, tenant: Tenant, change: str, details: list[str],
                  fields: list[tuple[str, str]], button: str, danger: bool = False):
    return render(request, "staff/confirm.html", {"staff_section": "workspaces", "confirm": {
        "kind": kind, "title": title, "workspace": tenant.name, "change": change, "details": details,
        "fields": fields, "button": button, "danger": danger, "action": request.path,
        "next": safe_next(request, reverse("staff_console")),
    }})


def plan_usd(amount) -> str:
    """A plan's fee, credit or cap: whole cents (two-place columns), shown as billing's display rule shows whole
    cents. Written here because tenants sits below billing and does not import it."""
    return f"${amount:,.2f}"


def tiers_text(tiers) -> str:
    return " and ".join("MAX" if tier == "max" else "Auto" for tier in tiers) or "none"


def _plan_terms(plan: Plan) -> str:
    cap = plan_usd(plan.monthly_cap) if plan.monthly_cap is not None else "no cap"
    return (f"{plan.name}: {plan_usd(plan.monthly_fee)} a month, {plan_usd(plan.included_credit)} included, "
            f"markup {plan.markup_percent}%, {tiers_text(plan.allowed_tiers)}, cap {cap}")


@platform_admin_required
@require_POST
def staff_tenant_plan(request, tenant_id):
    tenant = get_or_404(tenant_get_all_tenants, tenant_id=tenant_id)
    form = TenantPlanForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the existing plans.")
    elif form.cleaned_data["plan"].pk == tenant.plan_id:
        messages.info(request, f"{tenant.name} is already on {tenant.plan.name}: nothing changed.")
    elif not _confirmed(request):
        plan = form.cleaned_data["plan"]
        return _confirm_page(
            request, kind="plan", title=f"Move {tenant.name} to {plan.name}?", tenant=tenant,
            change=f"plan {tenant.plan.name} → {plan.name}",
            details=[f"Now: {_plan_terms(tenant.plan)}.", f"After: {_plan_terms(plan)}.",
                     "Limits and tiers change at once. The monthly fee invoiced is that of the plan the workspace "
                     "is on when the month ends."],
            fields=[("plan", plan.slug)], button=f"Move to {plan.name}")
    else:
        tenant_change_plan(tenant=tenant, plan=form.cleaned_data["plan"], actor=request.user)
        messages.success(request, f"{tenant.name} moved from {tenant.plan.name} to {form.cleaned_data['plan'].name}.")
    return redirect(safe_next(request, "staff_console"))


@platform_admin_required
@require_POST
def staff_tenant_status(request, tenant_id):
    tenant = get_or_404(tenant_get_all_tenants, tenant_id=tenant_id)
    form = TenantStatusForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown status: choose active or suspended.")
    elif form.cleaned_data["status"] == tenant.status:
        messages.info(request, f"{tenant.name} is already {tenant.get_status_display().lower()}: nothing changed.")
    elif form.cleaned_data["status"] == Tenant.STATUS_SUSPENDED and not _confirmed(request):
        return _confirm_page(
            request, kind="suspend", title=f"Suspend {tenant.name}?", tenant=tenant, change="active → suspended",
            details=["Its members can no longer chat, running answers stop, and its API keys are refused until "
                     "the workspace is reactivated. Nothing is deleted."],
            fields=[("status", Tenant.STATUS_SUSPENDED)], button=f"Suspend {tenant.name}", danger=True)
    else:
        tenant_set_status(tenant=tenant, status=form.cleaned_data["status"], actor=request.user)
        verb = "suspended" if form.cleaned_data["status"] == Tenant.STATUS_SUSPENDED else "reactivated"
        messages.success(request, f"{tenant.name} {verb}.")
    return redirect(safe_next(request, "staff_console"))


@platform_admin_required
def staff_audit_all_tenants(request):
    tenant_id = request.GET.get("tenant", "")
    action = request.GET.get("action", "").strip()
    events = audit_list_all_tenants(tenant_id=int(tenant_id) if tenant_id.isdigit() else None, action=action)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    for event in page.object_list:
        event.label = action_label(event.action)
    return render(request, "staff/audit.html", {
        "page": page, "tenants": tenant_choices_all_tenants(),
        "tenant_id": tenant_id, "action": action, "staff_section": "audit",
        "audit_url": reverse("staff_audit"),
    })
