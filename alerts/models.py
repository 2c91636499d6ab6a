"""Budget alerts: per-workspace thresholds on the month's spend, the alerts sent, and the webhook delivery log.

An `AlertEvent` is the fact "this workspace's spend crossed this threshold this month"; its unique constraint
(tenant, month, threshold) is what makes each alert go out once, however many usage rows cross it at once.
Each event gets one email (to the workspace's admins) and, when a webhook is set, one `WebhookDelivery`; a
replay by the admin is another delivery of the same event (same body, new signature). Every HTTP try is a
`WebhookAttempt`.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models

from tenants.models import Tenant

DEFAULT_THRESHOLDS = (50, 80, 100)


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


class AlertSettings(models.Model):
    """A workspace's alert settings. A workspace without a row has the default thresholds and no webhook."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="alert_settings")
    thresholds = ArrayField(models.PositiveSmallIntegerField(), default=default_thresholds, blank=True,
                            help_text="Percentages of the monthly cap, ascending, each 1–100.")
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret = models.CharField(max_length=80, help_text="Signs webhook bodies (HMAC-SHA256).")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Alert settings of {self.tenant}"


class AlertEvent(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    month = models.DateField(help_text="The UTC month (its first day).")
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the cap.")
    cap = models.DecimalField(max_digits=12, decimal_places=2)
    spend = models.DecimalField(max_digits=20, decimal_places=10, help_text="Billed spend when it was seen.")
    created_at = models.DateTimeField(auto_now_add=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    emailed_to = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "month", "threshold"],
                                               name="alert_event_once_per_threshold_month")]

    def __str__(self):
        return f"{self.tenant} crossed {self.threshold}% in {self.month:%Y-%m}"


class WebhookDelivery(models.Model):
    STATUS_PENDING = "pending"
    STATUS_SUCCEEDED = "succeeded"
    STATUS_FAILED = "failed"
    STATUS_CHOICES = [(STATUS_PENDING, "Pending"), (STATUS_SUCCEEDED, "Delivered"), (STATUS_FAILED, "Failed")]

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    replay_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    url = models.URLField(max_length=500)
    body = models.TextField(help_text="The JSON body, exactly as signed and sent.")
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=STATUS_PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="webhook_delivery_recent")]

    def __str__(self):
        return f"Delivery {self.pk} of {self.event}"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    at = models.DateTimeField(auto_now_add=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_unique")]

    def __str__(self):
        return f"Try {self.number} of delivery {self.delivery_id}"
