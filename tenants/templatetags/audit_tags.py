"""Audit actions in words: `{% load audit_tags %}{{ event.action|audit_action }}` shows "API key created" for
`api_key.create`, on the workspace's activity log and the staff audit log alike. One list of labels, kept
with the staff audit page's (tenants/audit_labels.py); a code without a label still reads as words."""

from django import template

from ..audit_labels import action_label

register = template.Library()


@register.filter
def audit_action(code: str) -> str:
    return action_label(code or "")


# An audit row's target_type is its model's class name in lower case (tenants.services.audit_record).
TARGET_WORDS = {"tenant": "workspace", "apikey": "API key", "membership": "member", "invite": "invite link",
                "user": "account", "plan": "plan", "invoice": "invoice"}


@register.filter
def audit_target(target_type: str) -> str:
    return TARGET_WORDS.get(target_type or "", (target_type or "").replace("_", " "))
