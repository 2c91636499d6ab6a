"""Plans edited from /staff/: the fields a platform admin sets, what a change would do, and the one write.

`plan_save` is the service (one audit row with the changed fields before and after, `plan.create` or
`plan.change`, the same actions as the Django admin writes); `plan_changes` and `plan_workspace_count` are the
reads the review page shows before anything is saved.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction

from .models import AUTO_ESCALATION_MAX, TIER_CHOICES, Plan, Tenant, User
from .services import audit_record

# (field, label) in the order the editor and the review show them.
PLAN_FIELDS = [
    ("name", "Name"),
    ("monthly_fee", "Monthly fee (USD)"),
    ("included_credit", "Included credit (USD a month)"),
    ("markup_percent", "Markup (%)"),
    ("allowed_tiers", "Tiers"),
    ("monthly_cap", "Monthly spend cap (USD)"),
    ("max_to_auto_share", "MAX served on Auto from this share of the cap"),
    ("rpm_tenant", "Requests per minute, workspace"),
    ("tpm_tenant", "Tokens per minute, workspace"),
    ("rpm_key", "Requests per minute, API key"),
    ("tpm_key", "Tokens per minute, API key"),
    ("api_models_allowed", "API keys may name models"),
    ("auto_escalation", "Default Auto escalation (0 Off – 10)"),
]
MONEY_FIELDS = ("monthly_fee", "included_credit", "monthly_cap", "markup_percent")
LIMIT_FIELDS = ("rpm_tenant", "tpm_tenant", "rpm_key", "tpm_key")
_TIERS = dict(TIER_CHOICES)


def plan_workspace_count(*, plan: Plan | None) -> int:
    """How many workspaces are on the plan (a change to it affects all of them); none for a new plan."""
    return 0 if plan is None or plan.pk is None else Tenant.objects.filter(plan=plan).count()


def plan_values(plan: Plan) -> dict:
    return {field: getattr(plan, field) for field, _ in PLAN_FIELDS}


def shown(field: str, value) -> str:
    """A plan value for people (the review and the audit page)."""
    if value is None or value == "":
        return {"monthly_cap": "no cap", "max_to_auto_share": "never"}.get(field, "no limit")
    if field == "allowed_tiers":
        return " and ".join(_TIERS.get(tier, tier) for tier in value) or "none"
    if field == "api_models_allowed":
        return "yes" if value else "no"
    if field == "auto_escalation":
        return "Off" if value == 0 else f"level {value}"
    if field in ("monthly_fee", "included_credit", "monthly_cap"):
        return f"${Decimal(value):,.2f}"
    if field == "markup_percent":
        return f"{Decimal(value)}%"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _same(a, b) -> bool:
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return a is not None and b is not None and Decimal(a) == Decimal(b)
    return a == b


def plan_changes(*, plan: Plan | None, values: dict) -> list[dict]:
    """The fields `values` would change on `plan` (every field for a new plan): field, label, before, after."""
    before = plan_values(plan) if plan is not None and plan.pk else {}
    return [{"field": field, "label": label, "before": shown(field, before[field]) if before else "",
             "after": shown(field, values.get(field))}
            for field, label in PLAN_FIELDS
            if not before or not _same(before[field], values.get(field))]


def _json(value):
    return str(value) if isinstance(value, Decimal) else value


def _check(values: dict) -> None:
    """The rules a form checks too, here so no caller can skip them."""
    errors = {}
    for field in (*MONEY_FIELDS, *LIMIT_FIELDS, "max_to_auto_share"):
        value = values.get(field)
        if value is not None and value < 0:
            errors[field] = "Cannot be negative."
    tiers = values.get("allowed_tiers") or []
    if not tiers or any(t not in _TIERS for t in tiers):
        errors["allowed_tiers"] = "Choose at least one tier: Auto, MAX or both."
    level = values.get("auto_escalation")
    if level is None or not 0 <= level <= AUTO_ESCALATION_MAX:
        errors["auto_escalation"] = f"Choose Off (0) or a level from 1 to {AUTO_ESCALATION_MAX}."
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def plan_save(*, plan: Plan | None, values: dict, actor: User, slug: str = "") -> Plan:
    """Create a plan (`plan` None, with `slug`) or change one. Writes one audit row with the changed fields'
    before and after values, nothing when nothing changed. Bad values raise ValidationError and change nothing.
    Saving the plan tells the proxy's key caches (its post_save receiver), so limits apply at once."""
    _check(values)
    if plan is None:
        plan, before = Plan(slug=slug), None
    else:
        plan = Plan.objects.select_for_update().get(pk=plan.pk)
        before = plan_values(plan)
    changed = [field for field, _ in PLAN_FIELDS if before is None or not _same(before[field], values.get(field))]
    if not changed:
        return plan
    for field in changed:
        setattr(plan, field, values.get(field))
    plan.full_clean(validate_unique=True)
    plan.save()
    plan.refresh_from_db()  # the values as stored (99 → 99.00), for the audit row
    after = {f: _json(getattr(plan, f)) for f in changed}
    if before is None:
        after["slug"] = plan.slug
    audit_record(actor=actor, action="plan.change" if before else "plan.create", target=plan,
                 before={f: _json(before[f]) for f in changed} if before else None, after=after)
    return plan
