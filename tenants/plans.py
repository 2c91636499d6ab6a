"""The three default plans. Created by a data migration so sign-up works on a fresh database;
`seed_demo` makes sure they exist. Platform admins edit them afterwards (admin, staff console)."""

from decimal import Decimal

DEFAULT_PLANS = [
    {
        "slug": "free",
        "name": "Free",
        "allowed_tiers": ["auto"],
        "api_models_allowed": False,
        "monthly_fee": Decimal("0"),
        "included_credit": Decimal("0"),
        "monthly_cap": Decimal("5.00"),
        "rpm_tenant": 20,
        "tpm_tenant": 40_000,
        "rpm_key": 10,
        "tpm_key": 20_000,
        "markup_percent": Decimal("50"),
        "max_to_auto_share": None,
    },
    {
        "slug": "pro",
        "name": "Pro",
        "allowed_tiers": ["auto", "max"],
        "api_models_allowed": False,
        "monthly_fee": Decimal("49.00"),
        "included_credit": Decimal("20.00"),
        "monthly_cap": Decimal("500.00"),
        "rpm_tenant": 300,
        "tpm_tenant": 1_000_000,
        "rpm_key": 120,
        "tpm_key": 400_000,
        "markup_percent": Decimal("30"),
        "max_to_auto_share": Decimal("0.900"),
        "auto_escalation": 5,
    },
    {
        "slug": "enterprise",
        "name": "Enterprise",
        "allowed_tiers": ["auto", "max"],
        "api_models_allowed": True,
        "monthly_fee": Decimal("499.00"),
        "included_credit": Decimal("200.00"),
        "monthly_cap": Decimal("10000.00"),
        "rpm_tenant": 3000,
        "tpm_tenant": 10_000_000,
        "rpm_key": 1000,
        "tpm_key": 4_000_000,
        "markup_percent": Decimal("20"),
        "max_to_auto_share": None,
        "auto_escalation": 5,
    },
]


def ensure_default_plans(plan_model) -> None:
    """Create any missing default plan; never overwrite one an admin has edited.

    Data migrations pass their historical model, which lacks the fields added after them: those are left out
    (a later migration sets them)."""
    known = {f.name for f in plan_model._meta.get_fields()}
    for values in DEFAULT_PLANS:
        fields = {name: value for name, value in values.items() if name in known}
        plan_model.objects.get_or_create(slug=fields.pop("slug"), defaults=fields)
