"""Celery tasks of budget alerts: thin, each takes ids, calls one service, decides retry. All idempotent."""

from datetime import date

from celery import shared_task

from . import delivery, services


def enqueue_check(tenant_id: int, month: date) -> None:
    """billing.budget's spend watcher: a usage row took the workspace's spend to its next mark."""
    check_thresholds.delay(tenant_id, month.isoformat())


@shared_task(name="alerts.check_thresholds", ignore_result=True)
def check_thresholds(tenant_id: int, month: str) -> int:
    return len(services.alert_thresholds_check(tenant_id=tenant_id, month=date.fromisoformat(month)))


@shared_task(name="alerts.send_email", ignore_result=True, autoretry_for=(OSError,), retry_backoff=True,
             max_retries=5)
def send_alert_email(event_id: int) -> bool:
    return delivery.alert_email_send(event_id=event_id)


@shared_task(name="alerts.deliver_webhook", bind=True, ignore_result=True, max_retries=None)
def deliver_webhook(self, delivery_id: int) -> str:
    outcome = delivery.webhook_try(delivery_id=delivery_id)
    if outcome == delivery.RETRY:
        raise self.retry(countdown=delivery.backoff_seconds(self.request.retries + 1))
    return outcome
