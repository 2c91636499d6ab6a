"""Routing pages: /settings/, a tenant admin's workspace settings (the smart-Auto escalation dial), and
/staff/routing/, the catalog's chains with each endpoint's circuit-breaker state (platform admins).

/settings/ posts to itself: a plain form gets a redirect back (post/redirect/get); an HTMX request gets the
`smart` partial re-rendered in place. The page has no object ids: it acts on the current tenant only, the one
the tenant middleware resolved for this user.
"""

import re

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from tenants.access import platform_admin_required, tenant_admin_required
from tenants.models import AUTO_ESCALATION_OFF, TIER_MAX
from tenants.services import ESCALATION_INVALID, tenant_escalation_set

from .breaker import breaker_states_sync
from .selectors import endpoint_list, tier_chain_list
from .smart import ROUTER_LEVELS, router

SETTINGS_TEMPLATE = "routing/settings.html"
PLAN_DEFAULT = "default"  # the dial's form value for "follow the plan's default" (the tenant field is None)


def _share_percent(level: int) -> int:
    """The share of Auto turns a level is calibrated to send to MAX, in whole percent; 0 when Off."""
    return round(router().expected_share(level) * 100) if level > AUTO_ESCALATION_OFF else 0


def _share_text(level: int) -> str:
    if level <= AUTO_ESCALATION_OFF:
        return "Auto never escalates"
    return f"about {_share_percent(level)}% of Auto turns go to MAX"


def _level_name(level: int) -> str:
    return f"level {level}" if level > AUTO_ESCALATION_OFF else "Off"


def _setting_text(tenant) -> str:
    """The tenant's setting in words, with what it does: "level 7: about 35% of Auto turns go to MAX"."""
    level = tenant.escalation_level
    name = _level_name(level)
    if tenant.auto_escalation is None:
        name = f"plan default ({name})"
    return f"{name}: {_share_text(level)}"


def _dial(tenant) -> list[dict]:
    """The dial's choices, each with the share of Auto turns it sends to MAX; the tenant's setting checked."""
    plan_level = tenant.plan.escalation_default
    choices = [(PLAN_DEFAULT, None, f"Plan default ({_level_name(plan_level)})"),
               (str(AUTO_ESCALATION_OFF), AUTO_ESCALATION_OFF, "Off")]
    choices += [(str(level), level, f"Level {level}") for level in ROUTER_LEVELS]
    dial = []
    for value, level, label in choices:
        in_force = plan_level if level is None else level
        dial.append({"value": value, "label": label, "checked": level == tenant.auto_escalation,
                     "share": _share_text(in_force), "percent": _share_percent(in_force)})
    return dial


def _parse_level(raw: str | None) -> int | None:
    """The dial's form value as the service takes it: None for the plan default, else an integer (the service
    checks the range)."""
    if raw == PLAN_DEFAULT:
        return None
    raw = (raw or "").strip()
    if not re.fullmatch(r"-?[0-9]+", raw):
        raise ValidationError({"level": ESCALATION_INVALID})
    return int(raw)


def _render_settings(request, *, tenant, status=200, error=""):
    context = {
        "tenant": tenant,
        "includes_max": tenant.plan.allows_tier(TIER_MAX),
        "choices": _dial(tenant),
        "setting_text": _setting_text(tenant),
        "router_version": router().version,
        "error": error,
    }
    template = f"{SETTINGS_TEMPLATE}#smart" if request.htmx else SETTINGS_TEMPLATE
    return render(request, template, context, status=status)


@tenant_admin_required
@require_http_methods(["GET", "POST"])
def workspace_settings(request):
    if request.method == "GET":
        return _render_settings(request, tenant=request.tenant)
    try:
        tenant = tenant_escalation_set(tenant=request.tenant, actor=request.user,
                                       level=_parse_level(request.POST.get("auto_escalation")))
    except ValidationError as exc:
        # HTMX swaps only 2xx answers by default, so the error comes back as a 200 there.
        return _render_settings(request, tenant=request.tenant, error=" ".join(exc.messages),
                                status=200 if request.htmx else 400)
    messages.success(request, f"Auto escalation saved: {_setting_text(tenant)}.")
    if request.htmx:
        return _render_settings(request, tenant=tenant)
    return redirect("workspace_settings")


@platform_admin_required
def staff_routing_all_tenants(request):
    endpoints = list(endpoint_list())
    states = breaker_states_sync([e.slug for e in endpoints])
    rows = [{"endpoint": e, **states[e.slug]} for e in endpoints]
    chains: dict[str, list[str]] = {}
    for entry in tier_chain_list():
        chains.setdefault(entry.tier, []).append(entry.endpoint.slug)
    defaults = {
        "threshold": settings.ROUTING_BREAKER_THRESHOLD,
        "cooldown": settings.ROUTING_BREAKER_COOLDOWN_SECONDS,
        "trial": settings.ROUTING_BREAKER_TRIAL_SECONDS,
    }
    return render(request, "routing/staff_routing.html", {"rows": rows, "chains": chains, "defaults": defaults})
