"""Audit action codes in words, for the staff audit log. A code not listed here is still shown readably
(`catalog.endpoint_create` → "Catalog: endpoint create"), so a new action never shows as a bare code."""

ACTION_LABELS = {
    "tenant.create": "Workspace created",
    "tenant.plan_change": "Plan changed",
    "tenant.suspend": "Workspace suspended",
    "tenant.reactivate": "Workspace reactivated",
    "tenant.auto_escalation_change": "Auto escalation changed",
    "membership.add": "Member added",
    "membership.join": "Member joined by invite",
    "membership.role_change": "Member role changed",
    "membership.remove": "Member removed",
    "membership.limits": "Member limits changed",
    "invite.create": "Invite created",
    "invite.revoke": "Invite revoked",
    "api_key.create": "API key created",
    "api_key.rename": "API key renamed",
    "api_key.revoke": "API key revoked",
    "api_key.limits": "API key limits changed",
    "plan.create": "Plan created",
    "plan.change": "Plan edited",
    "catalog.price_change": "Model prices changed",
    "auth.login_throttled": "Login attempts throttled",
    "auth.password_reset_throttled": "Password resets throttled",
    "invoice.finalize": "Invoice finalized",
    "invoice.void": "Invoice voided",
    "invoice.credit_note": "Credit note issued",
}

_AREAS = {"tenant": "Workspace", "api_key": "API key", "catalog": "Model catalog"}


def action_label(code: str) -> str:
    if code in ACTION_LABELS:
        return ACTION_LABELS[code]
    area, _, verb = code.partition(".")
    area = _AREAS.get(area, area.replace("_", " ").capitalize())
    return f"{area}: {verb.replace('_', ' ')}" if verb else area
