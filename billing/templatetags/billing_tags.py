"""Billing template helpers: money (one display rule for every page) and number formatting, and the spend banner for tenant admins.

base.html shows the banner with `{% load billing_tags %}{% billing_banner %}`.
"""

import logging
from decimal import ROUND_HALF_UP, Decimal

import redis
from django import template

from billing.money import display_usd
from billing.selectors import tenant_budget_status

logger = logging.getLogger(__name__)
register = template.Library()

BANNER_WARN_SHARE = Decimal("0.8")


@register.filter
def usd(value, _places=None):
    """Money for people, by the one display rule in billing.money (`display_usd`): cents for whole-cent and
    larger amounts, enough places below a dollar that a sub-cent amount never shows as $0.00. An argument
    (`usd:4`, from before the rule) is accepted and ignored, so every page shows an amount the same way."""
    if value is None or value == "":
        return ""
    return display_usd(value if isinstance(value, Decimal) else Decimal(str(value)))


@register.filter
def num(value):
    """12,345 — a faster intcomma for large tables."""
    if value is None or value == "":
        return "0"
    return f"{int(value):,}"


@register.filter
def pct(part, whole):
    """part / whole as a percentage with one decimal; blank when whole is zero."""
    if not whole:
        return ""
    return f"{(Decimal(part) * 100 / Decimal(whole)).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


@register.inclusion_tag("billing/_banner.html", takes_context=True)
def billing_banner(context):
    """For tenant admins: a notice at 80% of the plan's monthly cap and a stronger one at 100%."""
    request = context.get("request")
    membership = getattr(request, "membership", None)
    if membership is None or not membership.is_admin:
        return {"banner": None}
    try:
        status = tenant_budget_status(tenant=membership.tenant)
    except redis.RedisError:
        # A page must not fail because the budget cache is down; the banner simply waits.
        logger.warning("budget banner skipped: Redis unavailable", exc_info=True)
        return {"banner": None}
    if status is None or status["share"] < BANNER_WARN_SHARE:
        return {"banner": None}
    status["level"] = "reached" if status["share"] >= 1 else "warning"
    status["percent"] = int(status["share"] * 100)
    status["tenant"] = membership.tenant
    return {"banner": status}
