from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from ..access import is_platform_admin
from ..middleware import SESSION_KEY
from ..selectors import membership_get_for_user
from ._util import safe_next


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
        # A tenant one does not belong to and a tenant that does not exist get the same answer.
        messages.error(request, "You are not a member of that tenant, so you cannot switch to it.")
    else:
        request.session[SESSION_KEY] = membership.tenant_id
        messages.success(request, f"Switched to {membership.tenant.name}.")
    return redirect(safe_next(request, "home"))
