"""Spend limits and access per API key (/api-keys/<id>/limits/) and per member (/team/members/<id>/limits/),
for the workspace's admins. A plain form: GET shows it, POST saves through tenants.limits and goes back to the
list; bad input is shown on the form (400) and changes nothing. Beside the limit, the page shows what the key or
member has spent this month (billed USD, from the workspace's ledger: which is why the page lives in billing,
above tenants, and not in tenants/views)."""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Sum
from django.shortcuts import redirect, render

from tenants.access import tenant_admin_required
from tenants.limits import api_key_limits_set, membership_limits_set
from tenants.models import TIER_CHOICES
from tenants.selectors import api_key_get, membership_get
from tenants.views._util import add_service_errors, get_or_404

from .. import money
from ..selectors import usage_list

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


def _month_spend(request, subject, kind) -> dict:
    """This month's billed spend of the key (its rows) or the member (their chat turns and their keys' rows), the
    same rows the limit counts; with the saved limit and the share of it used."""
    rows = usage_list(tenant=request.tenant)
    rows = rows.filter(api_key_id=subject.pk) if kind == "key" else rows.filter(user_id=subject.user_id)
    spend = rows.aggregate(s=Sum("billed"))["s"] or money.ZERO
    limit = subject.monthly_limit
    return {"shown": money.display_usd(spend), "limit": None if limit is None else money.display_usd(limit),
            "share": None if limit is None else money.share_percent(spend, limit)}


def _page(request, *, form, subject, kind, back, status=200):
    return render(request, TEMPLATE, {"form": form, "subject": subject, "kind": kind, "back": back,
                                      "plan": request.tenant.plan, "spend": _month_spend(request, subject, kind)},
                  status=status)


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
