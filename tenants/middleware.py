"""Tenant resolution: `request.tenant` and `request.membership` from the user's current membership.

The current tenant's id is kept in the session; a user with no valid choice gets their first membership.
A signed-in user who is in no workspace (a platform admin, finance) and opens a workspace page (chat, usage,
team ...) gets one page saying so, with links to where they can go, rather than the page's own 404 or redirect.
Members of a suspended tenant see one page saying so and can do nothing else there (they may still log out,
switch to another tenant, accept an invite elsewhere, or use staff pages). The `/v1/` proxy path
authenticates by API key and is left alone.

The middleware is sync only, on purpose — do not make it async-capable. It is the innermost one, and Django
runs every sync-capable middleware outside a sync one as sync too, so under ASGI the whole stack runs in one
thread hop instead of one hop per hook of every MiddlewareMixin (bench/chat_latency.py measures it; figures in
bench/README.md, "Chat"). The ASGI hot paths (`/v1/`, chat SSE streams) do not go through Django.
"""

from django.shortcuts import render

from .access import is_platform_admin
from .selectors import membership_get_for_user, membership_list_for_user

SESSION_KEY = "tenant_id"
# Paths a member of a suspended tenant may still use.
SUSPENDED_ALLOWED_PREFIXES = ("/logout", "/tenants/switch", "/static/", "/healthz", "/metrics", "/admin/", "/staff/",
                              "/finance/", "/password/", "/invite/")
UNTOUCHED_PREFIXES = ("/v1/",)
# Pages that only make sense inside a workspace.
WORKSPACE_PREFIXES = ("/chat/", "/usage/", "/invoices/", "/team/", "/api-keys/", "/settings/", "/alerts/")


def resolve_membership(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    tenant_id = request.session.get(SESSION_KEY)
    membership = membership_get_for_user(user=user, tenant_id=tenant_id) if tenant_id else None
    if membership is None:
        membership = membership_list_for_user(user=user).first()
        if membership is not None:
            request.session[SESSION_KEY] = membership.tenant_id
    return membership


def _signed_in(request) -> bool:
    user = getattr(request, "user", None)
    return user is not None and user.is_authenticated


def _apply(request):
    """Set request.tenant / request.membership; returns the page to answer with instead of the view's (the
    tenant is suspended, or a workspace page was asked for by someone in no workspace), or None."""
    membership = resolve_membership(request)
    request.membership = membership
    request.tenant = membership.tenant if membership else None
    if (
        request.tenant is not None
        and not request.tenant.is_active
        and not request.path.startswith(SUSPENDED_ALLOWED_PREFIXES)
    ):
        return render(request, "tenants/suspended.html", {"tenant": request.tenant}, status=403)
    if membership is None and request.path.startswith(WORKSPACE_PREFIXES) and _signed_in(request):
        return render(request, "tenants/no_workspace.html", {"is_platform_admin": is_platform_admin(request.user)},
                      status=403)
    return None


class TenantMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(UNTOUCHED_PREFIXES):
            return self.get_response(request)
        return _apply(request) or self.get_response(request)
