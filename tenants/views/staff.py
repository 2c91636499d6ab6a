"""/staff/: the platform admins' console across all tenants (superusers, or tenants.manage_tenants).
Every change goes through the services, which write exactly one audit row each."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from ..access import platform_admin_required
from ..forms import TenantPlanForm, TenantStatusForm
from ..models import Tenant
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
    return render(request, "staff/console.html", {"page": page, "query": query, "plans": list(plan_list())})


@platform_admin_required
@require_POST
def staff_tenant_plan(request, tenant_id):
    tenant = get_or_404(tenant_get_all_tenants, tenant_id=tenant_id)
    form = TenantPlanForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the existing plans.")
    elif form.cleaned_data["plan"].pk == tenant.plan_id:
        messages.info(request, f"{tenant.name} is already on {tenant.plan.name}: nothing changed.")
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
    return render(request, "staff/audit.html", {
        "page": page, "tenants": tenant_choices_all_tenants(),
        "tenant_id": tenant_id, "action": action,
    })
