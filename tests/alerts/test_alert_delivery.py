"""Budget alerts end to end: real usage rows (billing's write path and its settle), a real Celery worker, a real
loopback webhook receiver. Each threshold sends one email and one webhook, also when 20 rows cross it at once;
a failing endpoint is retried with backoff and every try is logged; the signature verifies with the recipe of
docs/operations.md."""

import hashlib
import hmac
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection

from alerts.models import AlertEvent, AlertSettings, WebhookAttempt, WebhookDelivery
from billing import budget
from billing.budget import cached_month_spend
from billing.months import month_start
from tenants.models import Membership

from .conftest import spend_to, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "whsec_test-secret"


def verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    """The verification recipe of docs/operations.md ("Budget alerts"), written out as a receiver would."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


@pytest.fixture
def workspace(globex, bob, receiver, alerts_settings, chat_redis):
    """globex (Free: $5.00 cap, +50%) with bob as its admin, a webhook to the receiver, its spend counter seeded."""
    Membership.objects.filter(user=bob, tenant=globex).update(role="admin")
    AlertSettings.objects.create(tenant=globex, webhook_url=receiver.url, webhook_secret=SECRET)
    cached_month_spend(tenant_id=globex.pk)  # a capped workspace's counter exists once it has reserved
    return globex


def _mark(redis, tenant):
    raw = redis.get(budget.watch_key(tenant.pk, month_start()))
    return None if raw is None else int(raw)


def _concurrent_rows(tenant, count: int, billed: Decimal):
    barrier = threading.Barrier(count)

    def row(_):
        try:
            barrier.wait(timeout=10)
            spend_to(tenant, billed, source="api")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(row, range(count)))


def test_each_threshold_sends_one_email_and_one_webhook_with_20_rows_crossing_at_once(
        workspace, receiver, celery_worker, chat_redis):
    spend_to(workspace, Decimal("2.40"))  # 48% of $5.00
    wait_until(lambda: _mark(chat_redis, workspace) == 25_000_000_000, what="the 50% mark ($2.50)")
    assert AlertEvent.objects.count() == 0 and receiver.calls == [] and mail.outbox == []

    _concurrent_rows(workspace, 20, Decimal("0.06"))  # → $3.60, 72%: crosses 50% only
    wait_until(lambda: _mark(chat_redis, workspace) == 40_000_000_000, what="the 80% mark ($4.00)")
    wait_until(lambda: len(receiver.calls) >= 1 and len(mail.outbox) >= 1, what="the 50% alert")
    _concurrent_rows(workspace, 20, Decimal("0.075"))  # → $5.10: crosses 80% and 100%
    wait_until(lambda: _mark(chat_redis, workspace) == -1, what="no mark left this month")
    wait_until(lambda: len(receiver.calls) >= 3 and len(mail.outbox) >= 3, what="the 80% and 100% alerts")
    wait_until(lambda: not WebhookDelivery.objects.filter(status="pending").exists(), what="deliveries ended")

    assert sorted(AlertEvent.objects.values_list("threshold", flat=True)) == [50, 80, 100]
    assert sorted(b["data"]["threshold_percent"] for b in receiver.bodies()) == [50, 80, 100]
    assert len(receiver.calls) == 3 and len(mail.outbox) == 3
    assert sorted(m.subject for m in mail.outbox) == [f"Globex has used {p}% of its monthly spending cap"
                                                      for p in (100, 50, 80)]
    assert all(m.to == ["bob@globex.test"] for m in mail.outbox)
    fifty = next(b for b in receiver.bodies() if b["data"]["threshold_percent"] == 50)
    assert fifty["type"] == "budget.threshold_crossed" and fifty["workspace"]["slug"] == "globex"
    assert fifty["data"]["cap"] == "5.00" and Decimal(fifty["data"]["spend"]) >= Decimal("2.50")
    for call in receiver.calls:
        assert verify(SECRET, call["body"], call["headers"]["KiwiClaw-Signature"])
        assert not verify("whsec_wrong", call["body"], call["headers"]["KiwiClaw-Signature"])
        assert call["headers"]["KiwiClaw-Event-Id"] == json.loads(call["body"])["id"]


def test_a_failing_endpoint_is_retried_with_backoff_and_every_try_is_logged(workspace, receiver, celery_worker):
    receiver.statuses = [500, 503, 200]
    spend_to(workspace, Decimal("3.00"))  # 60%: the first row sees no mark and looks
    delivery = wait_until(lambda: WebhookDelivery.objects.filter(status="succeeded").first(), what="delivered")
    assert delivery.attempts == 3 and delivery.last_status_code == 200
    assert list(WebhookAttempt.objects.filter(delivery=delivery).values_list("number", "status_code")) == [
        (1, 500), (2, 503), (3, 200)]
    assert [a.error for a in delivery.attempt_log.all()] == ["HTTP 500", "HTTP 503", ""]
    bodies = {call["body"] for call in receiver.calls}
    assert len(receiver.calls) == 3 and len(bodies) == 1  # the same body each time, signed afresh
    assert all(verify(SECRET, c["body"], c["headers"]["KiwiClaw-Signature"]) for c in receiver.calls)
    times = list(delivery.attempt_log.values_list("at", flat=True))
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(times, times[1:], strict=False)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # backoff: ALERTS_WEBHOOK_BACKOFF_SECONDS, doubled per try
    assert len(mail.outbox) == 1


def test_redirects_are_not_followed_and_a_delivery_that_keeps_failing_ends_failed_then_replays(
        workspace, receiver, celery_worker, alerts_settings, client, bob):
    alerts_settings.ALERTS_WEBHOOK_MAX_ATTEMPTS = 2
    receiver.statuses = [302]
    spend_to(workspace, Decimal("2.60"))
    failed = wait_until(lambda: WebhookDelivery.objects.filter(status="failed").first(), what="gave up")
    assert failed.attempts == 2 and failed.last_status_code == 302
    assert "Redirects are not followed" in failed.last_error
    assert len(receiver.calls) == 2  # never a call to the redirect's target
    receiver.statuses = [200]
    client.force_login(bob)
    response = client.post(f"/alerts/deliveries/{failed.pk}/replay/")
    assert response.status_code == 302
    replay = wait_until(lambda: WebhookDelivery.objects.filter(replay_of=failed, status="succeeded").first(),
                        what="the replay delivered")
    assert replay.body == failed.body and replay.attempts == 1
    assert receiver.calls[-1]["body"] == failed.body.encode()
    assert AlertEvent.objects.count() == 1 and len(mail.outbox) == 1  # a replay sends the webhook only


def test_without_a_webhook_an_alert_is_an_email_only(globex, bob, alerts_settings, celery_worker):
    Membership.objects.filter(user=bob, tenant=globex).update(role="admin")
    cached_month_spend(tenant_id=globex.pk)
    spend_to(globex, Decimal("4.20"))  # 84%: 50% and 80% at once
    wait_until(lambda: len(mail.outbox) == 2, what="two emails")
    assert sorted(AlertEvent.objects.values_list("threshold", flat=True)) == [50, 80]
    assert not WebhookDelivery.objects.exists()
    assert AlertEvent.objects.filter(emailed_at__isnull=True).count() == 0
