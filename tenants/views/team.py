"""/team/: a tenant admin's members, roles, invite links and activity log. Plain forms work; HTMX requests
get the `panel` partial back instead of a redirect."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from ..access import tenant_admin_required
from ..forms import InviteCreateForm, RoleForm
from ..selectors import audit_get, audit_list, invite_get, invite_list, membership_get, membership_list
from ..services import invite_create, invite_revoke, membership_change_role, membership_remove
from ._util import error_text, get_or_404

TEMPLATE = "tenants/team.html"


def _render(request, *, status=200, invite_form=None, **extra):
    context = {
        "members": membership_list(tenant=request.tenant),
        "invites": invite_list(tenant=request.tenant)[:50],
        "invite_form": invite_form or InviteCreateForm(),
        "now": timezone.now(),
        **extra,
    }
    template = f"{TEMPLATE}#panel" if request.htmx else TEMPLATE
    return render(request, template, context, status=status)


def _done(request):
    """After an action: the panel for HTMX, a redirect (post/redirect/get) for a plain form. If the admin
    just demoted or removed themselves, /team/ is no longer theirs: go home."""
    still_admin = request.user.memberships.filter(tenant=request.tenant, role="admin").exists()
    if not still_admin:
        return HttpResponseClientRedirect(reverse("home")) if request.htmx else redirect("home")
    return _render(request) if request.htmx else redirect("team")


@tenant_admin_required
def team(request):
    return _render(request)


@tenant_admin_required
@require_POST
def invite_create_view(request):
    form = InviteCreateForm(request.POST)
    if not form.is_valid():
        return _render(request, invite_form=form, status=200 if request.htmx else 400)
    invite, token = invite_create(tenant=request.tenant, actor=request.user, **form.cleaned_data)
    # The link exists only in this response: only its hash is stored. So no redirect here.
    link = request.build_absolute_uri(reverse("invite_accept", args=[token]))
    return _render(request, new_invite=invite, new_invite_link=link)


@tenant_admin_required
@require_POST
def invite_revoke_view(request, invite_id):
    invite = get_or_404(invite_get, tenant=request.tenant, invite_id=invite_id)
    invite_revoke(invite=invite, actor=request.user)
    messages.success(request, "Invite link revoked: it can no longer be used.")
    return _done(request)


@tenant_admin_required
@require_POST
def member_role_view(request, membership_id):
    membership = get_or_404(membership_get, tenant=request.tenant, membership_id=membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: member or admin.")
        return _done(request)
    try:
        membership_change_role(membership=membership, role=form.cleaned_data["role"], actor=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"{membership.user.email} is now {form.cleaned_data['role']}.")
    return _done(request)


@tenant_admin_required
@require_POST
def member_remove_view(request, membership_id):
    membership = get_or_404(membership_get, tenant=request.tenant, membership_id=membership_id)
    try:
        membership_remove(membership=membership, actor=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"{membership.user.email} was removed from {request.tenant.name}.")
    return _done(request)


@tenant_admin_required
def audit_view(request):
    page = Paginator(audit_list(tenant=request.tenant), 50).get_page(request.GET.get("page"))
    return render(request, "tenants/audit.html", {"page": page})


@tenant_admin_required
def audit_detail_view(request, event_id):
    event = get_or_404(audit_get, tenant=request.tenant, event_id=event_id)
    return render(request, "tenants/audit_detail.html", {"event": event})
