"""Reads for budget alerts; every one takes the tenant."""

from django.db.models import QuerySet

from tenants.models import Tenant

from .models import AlertEvent, AlertSettings, WebhookDelivery


def alert_settings_get(*, tenant: Tenant) -> AlertSettings | None:
    return AlertSettings.objects.filter(tenant=tenant).first()


def alert_event_list(*, tenant: Tenant) -> QuerySet[AlertEvent]:
    return AlertEvent.objects.filter(tenant=tenant)


def webhook_delivery_list(*, tenant: Tenant) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(tenant=tenant).select_related("event")


def webhook_delivery_get(*, tenant: Tenant, delivery_id) -> WebhookDelivery:
    """Raises WebhookDelivery.DoesNotExist for a missing id and another tenant's id alike."""
    return webhook_delivery_list(tenant=tenant).get(pk=delivery_id)
