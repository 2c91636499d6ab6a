"""Who may open which page. Other apps use these too: `tenant_required` for any member's page,
`tenant_admin_required` for a tenant admin's page, `platform_admin_required` for staff pages."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect

MANAGE_TENANTS_PERM = "tenants.manage_tenants"
FINANCE_PERM = "billing.view_finance"  # declared by billing's models; checked here only as a name


def is_platform_admin(user) -> bool:
    # has_perm is True for active superusers, so they need no separate check.
    return bool(user and user.is_authenticated and user.has_perm(MANAGE_TENANTS_PERM))


def tenant_required(view):
    """Logged in and with a current workspace; a user in none is sent home with a note (the workspace pages
    themselves answer such a user with tenants/no_workspace.html, from the middleware)."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if getattr(request, "tenant", None) is None:
            messages.info(request, "You are not in a workspace yet. Ask a workspace admin for an invite link.")
            return redirect("home")
        return view(request, *args, **kwargs)

    return wrapper


def tenant_admin_required(view):
    """A tenant admin of the current tenant; other members get 403."""

    @tenant_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.membership.is_admin:
            raise PermissionDenied("Only workspace admins can do this.")
        return view(request, *args, **kwargs)

    return wrapper


def platform_admin_required(view):
    """Superusers and users holding tenants.manage_tenants; anonymous users are sent to log in."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_platform_admin(request.user):
            raise PermissionDenied("Only platform admins can open the staff console.")
        return view(request, *args, **kwargs)

    return wrapper
