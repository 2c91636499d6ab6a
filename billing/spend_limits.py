"""Monthly spend limits finer than a workspace's cap: a member's and an API key's (issue #16).

They are fields of `tenants.models.Membership` and `ApiKey` (`monthly_limit`, `allowed_tiers`); here they
become the `SpendLimit` values the budget reserves against (billing/budget.py), in the same script and round
trip as the workspace's cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Sum

from infra.redis import Script, redis_sync
from tenants.models import ApiKey, Membership

from . import budget_lua, money
from .models import UsageRecord
from .months import month_bounds


@dataclass(frozen=True)
class SpendLimit:
    """A monthly spend limit finer than the workspace's cap: a member's (`kind` "member", `subject_id` the
    user's id) or an API key's ("key", the key's id), in billed USD. `version` changes when the limit is edited
    (a fresh counter, seeded from the ledger, so one left from an earlier limit is never trusted by mistake),
    and `label` names it in a refusal. Build with `member_spend_limit` / `key_spend_limit`."""

    kind: str
    tenant_id: int
    subject_id: int
    limit: Decimal
    version: int
    label: str

    def keys(self, month: date) -> tuple[str, str, str]:
        """Redis keys: the month's spend counter, the reservations hash, the reservations' expiries."""
        scope = f"{self.kind}:{self.tenant_id}:{self.subject_id}"
        return (f"kc:budget:lspend:{scope}:{self.version}:{month:%Y%m}", f"kc:budget:lres:{scope}",
                f"kc:budget:lresexp:{scope}")

    def ledger(self, month_rows):
        """The rows of `month_rows` (a workspace's month of the ledger) that count against this limit: a
        member's own (chat and their keys alike), or one key's."""
        if self.kind == "member":
            return month_rows.filter(user_id=self.subject_id)
        return month_rows.filter(api_key_id=self.subject_id)

    def refusal_text(self, *, spend: Decimal, reserved: Decimal, want: Decimal, reset: str) -> str:
        who = f"The API key “{self.label}”" if self.kind == "key" else f"The member {self.label}"
        amount = money.format_usd(self.limit)
        if spend >= self.limit:
            text = f"{who} has reached its {amount} monthly spending limit."
        else:
            left = money.format_usd(max(money.ZERO, self.limit - spend - reserved))
            text = (f"{who} is too close to its {amount} monthly spending limit for this request (up to "
                    f"{money.format_usd(want)}); {left} is left this month.")
        return text + f" Usage resets on {reset}; a workspace admin can raise the limit."


def _version(changed_at: datetime | None) -> int:
    return int(changed_at.timestamp() * 1000) if changed_at else 0


def member_spend_limit(membership: Membership, *, label: str | None = None) -> SpendLimit | None:
    """The member's limit, or None when the member has none. `label` defaults to the user's email."""
    if membership.monthly_limit is None:
        return None
    return SpendLimit("member", membership.tenant_id, membership.user_id, membership.monthly_limit,
                      _version(membership.limits_changed_at), label or membership.user.email)


def key_spend_limit(api_key: ApiKey) -> SpendLimit | None:
    """The key's limit, or None when it has none."""
    if api_key.monthly_limit is None:
        return None
    return SpendLimit("key", api_key.tenant_id, api_key.pk, api_key.monthly_limit,
                      _version(api_key.limits_changed_at), api_key.name)


_RECONCILE = Script(budget_lua.RECONCILE)


def limit_counters_reconcile(*, month: date, ttl_seconds: int) -> int:
    """Rewrite the month's member and key counters that disagree with the ledger (compare-and-set, like the
    workspaces' counters in `budget_reconcile_all_tenants`, which calls this). Returns how many changed."""
    client = redis_sync()
    keys = list(client.scan_iter(match=f"kc:budget:lspend:*:{month:%Y%m}", count=1000))
    if not keys:
        return 0
    before = client.mget(keys)
    scopes = [(kind, int(tenant), int(subject)) for _, _, _, kind, tenant, subject, *_ in (k.split(":") for k in keys)]
    start, end = month_bounds(month)
    rows = UsageRecord.objects.filter(tenant_id__in={s[1] for s in scopes}, recorded_at__gte=start,
                                      recorded_at__lt=end)
    sums = {("member", t, u): s for t, u, s in rows.filter(user_id__isnull=False).values("tenant_id", "user_id")
            .annotate(s=Sum("billed")).values_list("tenant_id", "user_id", "s")}
    sums |= {("key", t, k): s for t, k, s in rows.filter(api_key_id__isnull=False).values("tenant_id", "api_key_id")
             .annotate(s=Sum("billed")).values_list("tenant_id", "api_key_id", "s")}
    changed = 0
    for key, scope, old in zip(keys, scopes, before, strict=True):
        truth = money.to_units(sums.get(scope) or money.ZERO)
        if old is not None and int(old) != truth:
            changed += _RECONCILE.run([key], [old, truth, ttl_seconds])
    return changed
