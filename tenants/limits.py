"""Writes for spend limits and access per member and per API key (issue #16): a monthly limit in billed USD,
tiers narrower than the plan, and for a key an optional expiry. One function per use case, keyword-only; each
change is audited in its transaction. Bad input raises ValidationError (keyed by field) and changes nothing.

Enforcement lives elsewhere: the budget reserves against the limits (billing/budget.py), the proxy checks the
tiers and the expiry from its cached key identity (proxy/auth.py, proxy/handler.py), which every save here
invalidates in every process (the post_save receivers in proxy/auth.py).
"""

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .models import TIER_CHOICES, ApiKey, Membership, Plan
from .services import audit_record

LIMIT_NEGATIVE = "Enter a limit of 0 or more (USD per month), or leave it empty for no limit of its own."
LIMIT_TOO_BIG = "Enter a limit under 10,000,000,000 USD."
TIERS_EMPTY = "Allow at least one tier."
EXPIRY_PAST = "Choose an expiry in the future, or revoke the key to stop it now."


def _clean_limit(value) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        limit = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValidationError({"monthly_limit": "Enter an amount in USD, like 25 or 12.50."}) from None
    if not limit.is_finite() or limit < 0:
        raise ValidationError({"monthly_limit": LIMIT_NEGATIVE})
    if limit >= Decimal("1e10"):
        raise ValidationError({"monthly_limit": LIMIT_TOO_BIG})
    return limit.quantize(Decimal("0.01"))


def _clean_tiers(tiers, plan: Plan) -> list[str] | None:
    """None (follow the plan) when every tier of the plan is allowed; else the narrower list, in plan order."""
    if tiers is None:
        return None
    tiers = set(tiers)
    if not tiers:
        raise ValidationError({"allowed_tiers": TIERS_EMPTY})
    names = dict(TIER_CHOICES)
    wider = sorted(tiers - set(plan.allowed_tiers))
    if wider:
        listed = ", ".join(names.get(t, t) for t in wider)
        raise ValidationError({"allowed_tiers": f"The {plan.name} plan does not include {listed}: a member or key "
                                                f"can be narrower than the plan, never wider."})
    if tiers == set(plan.allowed_tiers):
        return None
    return [t for t in plan.allowed_tiers if t in tiers]


def _limits(obj) -> dict:
    return {"monthly_limit": str(obj.monthly_limit) if obj.monthly_limit is not None else None,
            "allowed_tiers": obj.allowed_tiers}


def _apply(obj, *, limit: Decimal | None, tiers: list[str] | None) -> list[str]:
    """Set the fields; returns those that changed. A changed limit gets a new version (`limits_changed_at`)."""
    changed = []
    if obj.monthly_limit != limit:
        obj.monthly_limit = limit
        obj.limits_changed_at = timezone.now()
        changed += ["monthly_limit", "limits_changed_at"]
    if obj.allowed_tiers != tiers:
        obj.allowed_tiers = tiers
        changed.append("allowed_tiers")
    return changed


@transaction.atomic
def api_key_limits_set(*, api_key: ApiKey, actor, monthly_limit, allowed_tiers, expires_at: datetime | None
                       ) -> ApiKey:
    """Set a key's monthly limit (None: none of its own), allowed tiers (None or the plan's: follow the plan)
    and expiry (None: never). A revoked key cannot be changed."""
    api_key = ApiKey.objects.select_for_update().select_related("tenant__plan").get(pk=api_key.pk)
    if api_key.revoked_at is not None:
        raise ValidationError("This key is revoked: its limits no longer matter.")
    limit = _clean_limit(monthly_limit)
    tiers = _clean_tiers(allowed_tiers, api_key.tenant.plan)
    if expires_at is not None and expires_at != api_key.expires_at and expires_at <= timezone.now():
        raise ValidationError({"expires_at": EXPIRY_PAST})
    before = {**_limits(api_key), "expires_at": api_key.expires_at.isoformat() if api_key.expires_at else None}
    changed = _apply(api_key, limit=limit, tiers=tiers)
    if api_key.expires_at != expires_at:
        api_key.expires_at = expires_at
        changed.append("expires_at")
    if changed:
        api_key.save(update_fields=changed)
        audit_record(actor=actor, action="api_key.limits", tenant=api_key.tenant, target=api_key, before=before,
                     after={**_limits(api_key), "expires_at": expires_at.isoformat() if expires_at else None})
    return api_key


@transaction.atomic
def membership_limits_set(*, membership: Membership, actor, monthly_limit, allowed_tiers) -> Membership:
    """Set a member's monthly limit (None: none of their own; it counts their chat and their keys alike) and
    allowed tiers (None or the plan's: follow the plan)."""
    membership = Membership.objects.select_for_update().select_related("tenant__plan", "user").get(
        pk=membership.pk)
    limit = _clean_limit(monthly_limit)
    tiers = _clean_tiers(allowed_tiers, membership.tenant.plan)
    before = _limits(membership)
    changed = _apply(membership, limit=limit, tiers=tiers)
    if changed:
        membership.save(update_fields=changed)
        audit_record(actor=actor, action="membership.limits", tenant=membership.tenant, target=membership,
                     before={"user": membership.user.email, **before},
                     after={"user": membership.user.email, **_limits(membership)})
    return membership
