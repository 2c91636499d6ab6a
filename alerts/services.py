"""Writes for budget alerts: the threshold check a crossing triggers, the admin's settings, the secret, replays.

`alert_thresholds_check` runs in a Celery task that billing's settle script asks for (billing.budget's spend
watch: no round trip of its own per usage row) when a workspace's spend reaches the next threshold. It records
each crossed threshold once (`AlertEvent`'s unique constraint decides under concurrency: only the transaction
that inserts it sends), queues the email and the webhook after commit, and sets the next mark.
"""

import json
import logging
from datetime import date
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from billing import money
from billing.budget import budget_watch_reset, budget_watch_set, cached_month_spend
from billing.months import month_start
from tenants.models import Tenant
from tenants.services import audit_record

from . import addresses, signing
from .models import DEFAULT_THRESHOLDS, AlertEvent, AlertSettings, WebhookDelivery

logger = logging.getLogger(__name__)

THRESHOLDS_INVALID = "Enter percentages from 1 to 100, separated by commas, e.g. 50, 80, 100."
THRESHOLDS_OVER = "A threshold cannot be over 100% of the cap."
THRESHOLDS_ORDER = "List the thresholds in increasing order, each once (e.g. 50, 80, 100)."
WEBHOOK_HTTPS = "The webhook URL must start with https://."


def thresholds_of(tenant: Tenant) -> list[int]:
    row = AlertSettings.objects.filter(tenant=tenant).first()
    return list(row.thresholds) if row else list(DEFAULT_THRESHOLDS)


def _amount(cap: Decimal, percent: int) -> Decimal:
    return cap * percent / 100


# --- the check ----------------------------------------------------------------------------------------------

def alert_thresholds_check(*, tenant_id: int, month: date) -> list[AlertEvent]:
    """Record the thresholds the workspace's spend has crossed this month and not yet alerted, send their
    alerts (after commit), and set the next mark. Returns the events created now. Idempotent."""
    created: list[AlertEvent] = []
    for _ in range(5):  # again only if a row settled past the new mark while this looked
        tenant = Tenant.objects.select_related("plan").filter(pk=tenant_id).first()
        if tenant is None:
            return created
        cap = tenant.plan.monthly_cap
        if cap is None or cap <= 0 or month != month_start():
            budget_watch_set(tenant_id=tenant_id, month=month, mark=None)
            return created
        settings_row = AlertSettings.objects.filter(tenant=tenant).first()
        thresholds = sorted(settings_row.thresholds) if settings_row else list(DEFAULT_THRESHOLDS)
        spend = cached_month_spend(tenant_id=tenant_id, month=month)
        for percent in thresholds:
            if spend >= _amount(cap, percent):
                event = _event_record(tenant=tenant, month=month, percent=percent, cap=cap, spend=spend,
                                      settings_row=settings_row)
                if event is not None:
                    created.append(event)
        ahead = [_amount(cap, p) for p in thresholds if spend < _amount(cap, p)]
        if not budget_watch_set(tenant_id=tenant_id, month=month, mark=min(ahead) if ahead else None):
            return created
    return created


def _event_record(*, tenant: Tenant, month: date, percent: int, cap: Decimal, spend: Decimal,
                  settings_row: AlertSettings | None) -> AlertEvent | None:
    """The event, if this call created it (None: already recorded). Its delivery rides in the same
    transaction; the email and webhook tasks are queued on commit."""
    from .tasks import deliver_webhook, send_alert_email

    try:
        with transaction.atomic():
            event = AlertEvent.objects.create(tenant=tenant, month=month, threshold=percent, cap=cap,
                                              spend=money.to_ledger(spend))
            delivery = None
            if settings_row is not None and settings_row.webhook_url:
                delivery = WebhookDelivery.objects.create(tenant=tenant, event=event, url=settings_row.webhook_url,
                                                          body=_body(event, tenant))
    except IntegrityError:
        return None  # another check recorded it first: it sends, not this one
    transaction.on_commit(lambda: send_alert_email.delay(event.pk))
    if delivery is not None:
        transaction.on_commit(lambda: deliver_webhook.delay(delivery.pk))
    logger.info("budget alert: %s crossed %s%% of its cap in %s", tenant.slug, percent, f"{month:%Y-%m}")
    return event


def _body(event: AlertEvent, tenant: Tenant) -> str:
    return json.dumps({
        "id": f"evt_{event.pk}",
        "type": "budget.threshold_crossed",
        "created": int(event.created_at.timestamp()),
        "workspace": {"id": tenant.pk, "slug": tenant.slug, "name": tenant.name},
        "data": {"month": f"{event.month:%Y-%m}", "threshold_percent": event.threshold,
                 "cap": str(event.cap), "spend": str(money.round_cents(event.spend)), "currency": "USD"},
    }, separators=(",", ":"))


# --- the admin's settings -----------------------------------------------------------------------------------

def parse_thresholds(text: str) -> list[int]:
    """'50, 80, 100' → [50, 80, 100]; empty → [] (no alerts). ValidationError for anything else."""
    items = [item.strip().rstrip("%").strip() for item in (text or "").split(",") if item.strip()]
    try:
        values = [int(item) for item in items]
    except ValueError:
        raise ValidationError({"thresholds": THRESHOLDS_INVALID}) from None
    if any(v > 100 for v in values):
        raise ValidationError({"thresholds": THRESHOLDS_OVER})
    if any(v < 1 for v in values):
        raise ValidationError({"thresholds": THRESHOLDS_INVALID})
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValidationError({"thresholds": THRESHOLDS_ORDER})
    return values


def _check_webhook_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        return ""
    parts = urlsplit(url)
    allow_http = getattr(settings, "ALERTS_WEBHOOK_ALLOW_HTTP", settings.DEBUG)
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        raise ValidationError({"webhook_url": WEBHOOK_HTTPS + ("" if allow_http else " Plain http is only "
                                                                                     "accepted in debug mode.")})
    if not parts.hostname or parts.username or parts.password:
        raise ValidationError({"webhook_url": "Enter a full URL with a host name, without a user or password."})
    try:
        addresses.check_on_save(url)
    except addresses.AddressRefused as exc:
        raise ValidationError({"webhook_url": str(exc)}) from None
    return url


def _settings_row(tenant: Tenant) -> AlertSettings:
    row, _ = AlertSettings.objects.select_for_update().get_or_create(
        tenant=tenant, defaults={"webhook_secret": signing.new_secret()})
    return row


@transaction.atomic
def alert_settings_update(*, tenant: Tenant, actor, thresholds: str, webhook_url: str) -> AlertSettings:
    """Set the thresholds (text like '50, 80, 100'; each 1–100, increasing) and the webhook URL (https, or
    empty for none). Bad input raises ValidationError and changes nothing. Audited."""
    values = parse_thresholds(thresholds)
    url = _check_webhook_url(webhook_url)
    row = _settings_row(tenant)
    before = {"thresholds": list(row.thresholds), "webhook_url": row.webhook_url}
    row.thresholds, row.webhook_url = values, url
    row.save()
    after = {"thresholds": values, "webhook_url": url}
    if after != before:
        audit_record(actor=actor, action="alerts.settings", tenant=tenant, target=row, before=before, after=after)
        transaction.on_commit(lambda: budget_watch_reset(tenant_id=tenant.pk))  # look again with the new ones
    return row


@transaction.atomic
def alert_secret_rotate(*, tenant: Tenant, actor) -> AlertSettings:
    row = _settings_row(tenant)
    row.webhook_secret = signing.new_secret()
    row.save(update_fields=["webhook_secret", "updated_at"])
    audit_record(actor=actor, action="alerts.secret_rotate", tenant=tenant, target=row)
    return row


@transaction.atomic
def webhook_replay(*, delivery: WebhookDelivery, actor) -> WebhookDelivery:
    """Send a delivery's event again, to the webhook URL set now: a new delivery with the same body (receivers
    dedupe by its `id`) and a fresh signature. Refused when no webhook is set."""
    from .tasks import deliver_webhook

    row = AlertSettings.objects.filter(tenant_id=delivery.tenant_id).first()
    if row is None or not row.webhook_url:
        raise ValidationError("Set a webhook URL first.")
    replay = WebhookDelivery.objects.create(tenant_id=delivery.tenant_id, event_id=delivery.event_id,
                                            replay_of=delivery, url=row.webhook_url, body=delivery.body)
    audit_record(actor=actor, action="alerts.webhook_replay", tenant=delivery.tenant, target=replay,
                 after={"replay_of": delivery.pk, "url": replay.url})
    transaction.on_commit(lambda: deliver_webhook.delay(replay.pk))
    return replay
