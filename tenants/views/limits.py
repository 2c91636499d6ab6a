"""Spend limits and access per API key (/api-keys/<id>/limits/) and per member (/team/members/<id>/limits/),
for the workspace's admins. A plain form: GET shows it, POST saves through tenants.limits and goes back to the
list; bad input is shown on the form (400) and changes nothing."""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from ..access import tenant_admin_required
from ..limits import api_key_limits_set, membership_limits_set
from ..models import TIER_CHOICES
from ..selectors import api_key_get, membership_get
from ._util import add_service_errors, get_or_404

TEMPLATE = "spend/limits.html"


class LimitsForm(forms.Form):
    """Parses; the service checks (negative limits, tiers wider than the plan) and has the last word."""

    monthly_limit = forms.CharField(
        label="Monthly spend limit (USD)", required=False, max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "no limit of its own"}),
        help_text="Billed USD per calendar month (UTC). Empty: only the workspace's cap applies.")
    allowed_tiers = forms.MultipleChoiceField(
        label="Allowed tiers", choices=TIER_CHOICES, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Narrower than the plan, never wider. All of the plan's tiers: follow the plan.")


class KeyLimitsForm(LimitsForm):
    expires_at = forms.DateTimeField(
        label="Expires", required=False, input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Optional, in UTC. From then on the key is refused like a revoked one.")


def _initial(obj, plan) -> dict:
    return {"monthly_limit": obj.monthly_limit if obj.monthly_limit is not None else "",
            "allowed_tiers": obj.allowed_tiers if obj.allowed_tiers is not None else list(plan.allowed_tiers)}


def _page(request, *, form, subject, kind, back, status=200):
    return render(request, TEMPLATE, {"form": form, "subject": subject, "kind": kind, "back": back,
                                      "plan": request.tenant.plan}, status=status)


@tenant_admin_required
def api_key_limits_view(request, api_key_id):
    key = get_or_404(api_key_get, tenant=request.tenant, api_key_id=api_key_id)
    if request.method != "POST":
        initial = {**_initial(key, request.tenant.plan), "expires_at": key.expires_at}
        return _page(request, form=KeyLimitsForm(initial=initial), subject=key, kind="key", back="api_keys")
    form = KeyLimitsForm(request.POST)
    if form.is_valid():
        try:
            api_key_limits_set(api_key=key, actor=request.user, monthly_limit=form.cleaned_data["monthly_limit"],
                               allowed_tiers=form.cleaned_data["allowed_tiers"],
                               expires_at=form.cleaned_data["expires_at"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Limits of the key “{key.name}” saved.")
            return redirect("api_keys")
    return _page(request, form=form, subject=key, kind="key", back="api_keys", status=400)


@tenant_admin_required
def member_limits_view(request, membership_id):
    membership = get_or_404(membership_get, tenant=request.tenant, membership_id=membership_id)
    if request.method != "POST":
        form = LimitsForm(initial=_initial(membership, request.tenant.plan))
        return _page(request, form=form, subject=membership, kind="member", back="team")
    form = LimitsForm(request.POST)
    if form.is_valid():
        try:
            membership_limits_set(membership=membership, actor=request.user,
                                  monthly_limit=form.cleaned_data["monthly_limit"],
                                  allowed_tiers=form.cleaned_data["allowed_tiers"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Limits of {membership.user.email} saved.")
            return redirect("team")
    return _page(request, form=form, subject=membership, kind="member", back="team", status=400)
