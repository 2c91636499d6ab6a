from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ..access import FINANCE_PERM, is_platform_admin
from ..middleware import SESSION_KEY
from ..selectors import membership_get_for_user, membership_list_for_user
from ._util import safe_next


def landing_url(user) -> str:
    """Where a user lands after logging in (when no `next` names a page): platform admins on the staff console,
    finance on /finance/, everyone else in the chat, and the dashboard for someone who is in no workspace."""
    if is_platform_admin(user):
        return reverse("staff_console")
    if user.has_perm(FINANCE_PERM):
        return reverse("finance_overview")
    if membership_list_for_user(user=user).exists():
        return reverse("conversations:home")
    return reverse("home")


@login_required
def home(request):
    return render(request, "tenants/home.html", {
        "tenant": request.tenant,
        "membership": request.membership,
        "plan": request.tenant.plan if request.tenant else None,
        "is_platform_admin": is_platform_admin(request.user),
    })


@login_required
@require_POST
def tenant_switch(request):
    raw = request.POST.get("tenant_id", "")
    membership = membership_get_for_user(user=request.user, tenant_id=int(raw)) if raw.isdigit() else None
    if membership is None:
        # A workspace one does not belong to and a workspace that does not exist get the same answer.
        messages.error(request, "You are not a member of that workspace, so you cannot switch to it.")
    else:
        request.session[SESSION_KEY] = membership.tenant_id
        messages.success(request, f"Switched to {membership.tenant.name}.")
    return redirect(safe_next(request, "home"))
