"""Sending an alert: the email to the workspace's admins and one HTTP try of a webhook delivery.

Both are idempotent under a redelivered task: the email claims its event row (locked, `emailed_at`), a webhook
try locks its delivery row and does nothing once the delivery has ended. Webhook calls never follow redirects
(a 3xx is a failure), time out after ALERTS_WEBHOOK_TIMEOUT seconds, carry the signature of alerts/signing.py,
and only reach public addresses (alerts/addresses.py): a host that resolves to a private one ends the delivery
as failed at its first try, without connecting.
"""

import logging
import time

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from billing import money
from tenants.models import Membership

from . import addresses, signing
from .models import AlertEvent, AlertSettings, WebhookAttempt, WebhookDelivery

logger = logging.getLogger(__name__)

# What a try decided.
DONE, RETRY, GAVE_UP = "done", "retry", "gave_up"


def max_attempts() -> int:
    return int(getattr(settings, "ALERTS_WEBHOOK_MAX_ATTEMPTS", 6))


def backoff_seconds(attempt: int) -> float:
    """Seconds to wait before try `attempt + 1`: ALERTS_WEBHOOK_BACKOFF_SECONDS doubled per try, at most an hour."""
    return min(float(getattr(settings, "ALERTS_WEBHOOK_BACKOFF_SECONDS", 30)) * 2 ** (attempt - 1), 3600.0)


@transaction.atomic
def alert_email_send(*, event_id: int) -> bool:
    """Email the event to the workspace's admins, once. Returns True when this call sent it."""
    event = AlertEvent.objects.select_for_update().select_related("tenant__plan").filter(pk=event_id).first()
    if event is None or event.emailed_at is not None:
        return False
    tenant = event.tenant
    recipients = list(Membership.objects.filter(tenant=tenant, role=Membership.ROLE_ADMIN, user__is_active=True)
                      .order_by("user__email").values_list("user__email", flat=True))
    month = f"{event.month:%B %Y}"
    subject = f"{tenant.name} has used {event.threshold}% of its monthly spending cap"
    body = (f"The workspace {tenant.name} has spent {money.format_usd(money.round_cents(event.spend))} of its "
            f"{money.format_usd(event.cap)} monthly cap on the {tenant.plan.name} plan in {month}: it crossed "
            f"the {event.threshold}% alert.\n\nAt 100% new requests are refused until the month ends or the "
            f"plan is upgraded. Usage by model, member and API key: /usage/ · alert settings: /alerts/\n")
    if recipients:
        send_mail(subject, body, None, recipients)
    event.emailed_at, event.emailed_to = timezone.now(), ", ".join(recipients)
    event.save(update_fields=["emailed_at", "emailed_to"])
    return True


def webhook_try(*, delivery_id: int) -> str:
    """One HTTP try of a delivery: DONE (delivered, or nothing left to do), RETRY (failed, tries left) or
    GAVE_UP (failed for the last time). Each try is logged as a WebhookAttempt."""
    with transaction.atomic():
        delivery = (WebhookDelivery.objects.select_for_update(skip_locked=True).filter(
            pk=delivery_id, status=WebhookDelivery.STATUS_PENDING).first())
        if delivery is None:
            return DONE  # ended already, or another worker is trying it right now
        secret = AlertSettings.objects.filter(tenant_id=delivery.tenant_id).values_list(
            "webhook_secret", flat=True).first() or ""
        refused = False
        try:
            status_code, error, elapsed = _post(delivery, secret, addresses.target(delivery.url))
        except addresses.AddressRefused as exc:
            status_code, error, elapsed, refused = None, f"Not sent: {exc}", 0.0, True
        delivery.attempts += 1
        WebhookAttempt.objects.create(delivery=delivery, number=delivery.attempts, status_code=status_code,
                                      error=error[:500], duration_ms=int(elapsed * 1000))
        delivery.last_status_code, delivery.last_error = status_code, error[:500]
        ok = status_code is not None and 200 <= status_code < 300
        if ok or refused or delivery.attempts >= max_attempts():
            delivery.status = WebhookDelivery.STATUS_SUCCEEDED if ok else WebhookDelivery.STATUS_FAILED
            delivery.finished_at = timezone.now()
        delivery.save(update_fields=["attempts", "last_status_code", "last_error", "status", "finished_at"])
    if ok:
        return DONE
    logger.warning("webhook delivery %s try %s failed: %s", delivery.pk, delivery.attempts, error or status_code)
    return GAVE_UP if delivery.status == WebhookDelivery.STATUS_FAILED else RETRY


def _post(delivery: WebhookDelivery, secret: str, target: addresses.Target) -> tuple[int | None, str, float]:
    body = delivery.body.encode()
    headers = {"content-type": "application/json", "user-agent": "KiwiClaw-Webhooks/1",
               signing.HEADER: signing.header(secret, body), "KiwiClaw-Event-Id": f"evt_{delivery.event_id}"}
    if target.host_header:
        headers["host"] = target.host_header
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
    timeout = float(getattr(settings, "ALERTS_WEBHOOK_TIMEOUT", 5))
    started = time.monotonic()
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            response = client.post(target.url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}".rstrip(": "), time.monotonic() - started
    elapsed = time.monotonic() - started
    if 300 <= response.status_code < 400:
        return response.status_code, "Redirects are not followed: point the webhook at the final URL.", elapsed
    if not 200 <= response.status_code < 300:
        return response.status_code, f"HTTP {response.status_code}", elapsed
    return response.status_code, "", elapsed
