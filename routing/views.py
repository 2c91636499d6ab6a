"""/staff/routing/: the catalog's chains with each endpoint's circuit-breaker state (platform admins)."""

from django.conf import settings
from django.shortcuts import render

from tenants.access import platform_admin_required

from .breaker import breaker_states_sync
from .selectors import endpoint_list, tier_chain_list


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
