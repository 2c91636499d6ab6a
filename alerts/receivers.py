"""A changed cap (plan edit, plan change) means the spend marks set for alerts are stale: forget them, so the
next usage row looks again (billing.budget's spend watch). Receivers, because tenants cannot import upward."""

import logging

import redis
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from billing.budget import budget_watch_reset
from infra.redis import redis_sync
from tenants.models import Plan, Tenant

logger = logging.getLogger(__name__)


def _forget_all() -> None:
    try:
        client = redis_sync()
        keys = list(client.scan_iter(match="kc:budget:watch:*", count=1000))
        if keys:
            client.delete(*keys)
    except (redis.RedisError, OSError):
        logger.warning("could not forget the alert marks; they lapse within 15 minutes", exc_info=True)


@receiver(post_save, sender=Plan, dispatch_uid="alerts_plan_saved")
def _plan_saved(sender, instance: Plan, created: bool, **kwargs):
    if not created:
        transaction.on_commit(_forget_all)


@receiver(post_save, sender=Tenant, dispatch_uid="alerts_tenant_saved")
def _tenant_saved(sender, instance: Tenant, created: bool, **kwargs):
    if not created:
        tenant_id = instance.pk
        transaction.on_commit(lambda: budget_watch_reset(tenant_id=tenant_id))
