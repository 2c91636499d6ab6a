"""API key authentication for /v1 and the REST API, with a per-process cache.

Lookups are by SHA-256 of the secret (tenants.keys.hash_secret). A hit is cached in this process for
PROXY_KEY_CACHE_TTL seconds (default 10), so the hot path does not query Postgres per request; misses are
cached too (so a flood of wrong keys cannot hammer the database), in a bounded map.

Revocation: `tenants.services.api_key_revoke` saves the key; the post_save receiver below, on commit,
drops it from this process's cache at once and sets `kc:rl:revoked:<key id>` in Redis, which the rate-limit
script (ratelimit.py) checks on every request — so in practice every process refuses it immediately, and
without Redis's help another process does within the TTL. Plan changes and suspensions also clear this
process's cache, as do membership and user changes (a removed member's keys stop working); other processes
see them within the TTL. A receiver is used because tenants (a lower
layer) must not import the proxy.
"""

import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from tenants.keys import API_KEY_PREFIX, hash_secret
from tenants.models import ApiKey, Membership, Plan, Tenant, User

REVOKED_KEY = "kc:rl:revoked:{}"
_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class KeyIdentity:
    """Everything the hot path needs about a key, loaded with one query. The key acts as its creator, and only
    while the creator is an active member of the key's tenant."""

    key_id: int
    user: User
    membership: Membership  # the creator's membership in the key's tenant (its role decides admin rights)
    tenant: Tenant  # with .plan loaded

    @property
    def user_id(self) -> int:
        return self.user.pk

    @property
    def plan(self) -> Plan:
        return self.tenant.plan


# key hash -> (monotonic expiry, identity or None for "no such active key")
_cache: dict[str, tuple[float, KeyIdentity | None]] = {}


def cache_ttl() -> float:
    return float(getattr(settings, "PROXY_KEY_CACHE_TTL", 10))


def _load(key_hash: str) -> KeyIdentity | None:
    try:
        return _query(key_hash)
    except (InterfaceError, OperationalError):
        # Outside Django's request cycle (the raw ASGI entry) nobody else drops a broken connection.
        if not connection.in_atomic_block:
            connection.close()
        raise


def _query(key_hash: str) -> KeyIdentity | None:
    membership = (
        Membership.objects.select_related("user", "tenant__plan")
        .filter(user__api_keys__key_hash=key_hash, user__api_keys__revoked_at__isnull=True,
                user__api_keys__tenant=F("tenant"), user__is_active=True)
        .annotate(key_id=F("user__api_keys__id"))
        .first()
    )
    if membership is None:
        return None
    # last_used_at is refreshed once per cache period, not per request.
    ApiKey.objects.filter(pk=membership.key_id).update(last_used_at=timezone.now())
    return KeyIdentity(key_id=membership.key_id, user=membership.user, membership=membership,
                       tenant=membership.tenant)


_aload = sync_to_async(_load)


def _cached(key_hash: str) -> tuple[bool, KeyIdentity | None]:
    entry = _cache.get(key_hash)
    if entry is not None and entry[0] > time.monotonic():
        return True, entry[1]
    return False, None


def _store(key_hash: str, identity: KeyIdentity | None) -> None:
    if len(_cache) >= _MAX_ENTRIES:
        _cache.clear()
    _cache[key_hash] = (time.monotonic() + cache_ttl(), identity)


async def aauthenticate_key(secret: str | None) -> KeyIdentity | None:
    """The identity of an active key, or None. Hits Postgres at most once per key per TTL."""
    if not secret or not secret.startswith(API_KEY_PREFIX) or len(secret) > 200:
        return None
    key_hash = hash_secret(secret)
    hit, identity = _cached(key_hash)
    if hit:
        return identity
    identity = await _aload(key_hash)
    _store(key_hash, identity)
    return identity


def authenticate_key(secret: str | None) -> KeyIdentity | None:
    """Sync twin for DRF (runs in a thread)."""
    if not secret or not secret.startswith(API_KEY_PREFIX) or len(secret) > 200:
        return None
    key_hash = hash_secret(secret)
    hit, identity = _cached(key_hash)
    if hit:
        return identity
    identity = _load(key_hash)
    _store(key_hash, identity)
    return identity


def key_cache_clear() -> None:
    _cache.clear()


def _forget_key(key_hash: str, key_id: int) -> None:
    _cache.pop(key_hash, None)
    from .ratelimit import mark_revoked

    mark_revoked(key_id)


@receiver(post_save, sender=ApiKey, dispatch_uid="proxy_api_key_saved")
def _api_key_saved(sender, instance: ApiKey, created: bool, **kwargs):
    if instance.revoked_at is not None:
        key_hash, key_id = instance.key_hash, instance.pk
        transaction.on_commit(lambda: _forget_key(key_hash, key_id))


@receiver(post_save, sender=Membership, dispatch_uid="proxy_membership_saved")
@receiver(post_delete, sender=Membership, dispatch_uid="proxy_membership_deleted")
@receiver(post_save, sender=User, dispatch_uid="proxy_user_saved")
@receiver(post_save, sender=Tenant, dispatch_uid="proxy_tenant_saved")
@receiver(post_save, sender=Plan, dispatch_uid="proxy_plan_saved")
def _tenant_or_plan_saved(sender, **kwargs):
    transaction.on_commit(key_cache_clear)
