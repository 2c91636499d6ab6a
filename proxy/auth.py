"""API key authentication for /v1 and the REST API, with a per-process cache kept true by Redis pub/sub.

Lookups are by SHA-256 of the secret (tenants.keys.hash_secret). A hit is cached in this process, so the hot
path does not query Postgres per request; misses are cached too (so a flood of wrong keys cannot hammer the
database), in a bounded map.

Changes reach every process at once: a key revocation, and any save of a tenant (suspension), a plan (limits,
tiers), a membership or a user (a removed member's keys stop working), publishes an invalidation on commit
(the receivers below; tenants, a lower layer, must not import the proxy). Every serving process listens on a
daemon thread (one Redis connection) and drops the entries, then acknowledges; the publisher waits for the
acknowledgements (up to `ANNOUNCE_WAIT_SECONDS`), so when the revoking request returns no process still
answers from the old entry. This costs the hot path nothing: no Redis round trip per request (the proxy is
measured by bench/proxy_latency.py). The cache is trusted only while the listener is subscribed: before its
first subscription, while Redis is unreachable (an invalidation may be missed) and until it has subscribed
again (every entry is then dropped), lookups go to Postgres. `PROXY_KEY_CACHE_TTL` (default 10 s) still
bounds an entry's life as a backstop. A revoked key is also flagged in Redis (`kc:rl:revoked:<key id>`),
which the rate-limit script checks on every completion request (ratelimit.py). A key's expiry (`expires_at`)
is checked on every lookup, cached or not, so an expired key is refused the moment it expires.
"""

import logging
import os
import threading
import time
from dataclasses import dataclass

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from redis.backoff import NoBackoff
from redis.retry import Retry

from billing.budget import SpendLimit, key_spend_limit, member_spend_limit
from infra.redis import redis_sync
from tenants.keys import API_KEY_PREFIX, hash_secret
from tenants.models import AUTO_ESCALATION_OFF, ApiKey, Membership, Plan, Tenant, User

logger = logging.getLogger("proxy")

REVOKED_KEY = "kc:rl:revoked:{}"
# Pub/sub channels are server-wide, not per database: the channel names the database, so deployments (or test
# runs) sharing a Redis server on different databases do not acknowledge each other's invalidations.
CHANNEL = "kc:auth:invalidate:{}"
ACK_KEY = "kc:auth:ack:{}"
ANNOUNCE_WAIT_SECONDS = 0.5
_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class KeyIdentity:
    """Everything the hot path needs about a key, loaded with one query. The key acts as its creator, and only
    while the creator is an active member of the key's tenant, and until the key's expiry.

    The key's and its member's limits travel with it: `key_tiers` (None follows the plan), the member's tiers on
    `membership`, and `spend_limits`, the budget's SpendLimits of the key and the member (reserved with the
    workspace's cap by the proxy's budget hold, no query per request)."""

    key_id: int
    user: User
    membership: Membership  # the creator's membership in the key's tenant (its role decides admin rights)
    tenant: Tenant  # with .plan loaded
    key_name: str = ""
    expires_at: float | None = None  # epoch seconds
    key_tiers: tuple[str, ...] | None = None
    spend_limits: tuple[SpendLimit, ...] = ()

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= time.time()

    @staticmethod
    def tiers_text(tiers) -> str:
        """("auto",) → "Auto", for refusals."""
        return " and ".join(tier.upper() if tier == "max" else tier.capitalize() for tier in tiers) or "no tier"

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
        .annotate(key_id=F("user__api_keys__id"), key_name=F("user__api_keys__name"),
                  key_limit=F("user__api_keys__monthly_limit"), key_tiers=F("user__api_keys__allowed_tiers"),
                  key_expires_at=F("user__api_keys__expires_at"),
                  key_limits_changed_at=F("user__api_keys__limits_changed_at"))
        .first()
    )
    if membership is None:
        return None
    # last_used_at is refreshed once per cache period, not per request.
    ApiKey.objects.filter(pk=membership.key_id).update(last_used_at=timezone.now())
    key = ApiKey(pk=membership.key_id, tenant_id=membership.tenant_id, name=membership.key_name,
                 monthly_limit=membership.key_limit, limits_changed_at=membership.key_limits_changed_at)
    limits = tuple(limit for limit in (key_spend_limit(key), member_spend_limit(membership)) if limit is not None)
    expires = membership.key_expires_at
    if "max" not in (membership.key_tiers or ("max",)) or not membership.allows_tier("max"):
        # A key or member limited to Auto must not reach MAX models through smart Auto's escalation either. The
        # tenant object is this identity's own (loaded by the query above), so only its requests see this.
        membership.tenant.auto_escalation = AUTO_ESCALATION_OFF
    return KeyIdentity(key_id=membership.key_id, user=membership.user, membership=membership,
                       tenant=membership.tenant, key_name=membership.key_name,
                       expires_at=expires.timestamp() if expires else None,
                       key_tiers=tuple(membership.key_tiers) if membership.key_tiers is not None else None,
                       spend_limits=limits)


_aload = sync_to_async(_load)


# --- invalidation across processes ---

_listening = False  # subscribed: the cache may be trusted
_generation = 0  # bumped by every invalidation: a lookup that raced one is not stored
_listener_started = False
_listener_lock = threading.Lock()


def _channel(client: redis.Redis) -> str:
    return CHANNEL.format(client.connection_pool.connection_kwargs.get("db", 0))


def _invalidate(scope: str) -> None:
    """Drop cached lookups: `key:<hash>` one key's, anything else all of them."""
    global _generation
    _generation += 1
    if scope.startswith("key:"):
        _cache.pop(scope[4:], None)
    else:
        _cache.clear()


def _ensure_listener() -> None:
    """Start this process's listener thread on first use (and again in a forked child)."""
    global _listener_started
    if _listener_started:
        return
    with _listener_lock:
        if not _listener_started:
            _listener_started = True
            threading.Thread(target=_listen, name="proxy key cache invalidation", daemon=True).start()


def _after_fork() -> None:
    global _listener_started, _listening, _listener_lock
    _listener_started = _listening = False  # the parent's thread did not come along
    _listener_lock = threading.Lock()
    _cache.clear()


os.register_at_fork(after_in_child=_after_fork)


def _listen() -> None:
    global _listening
    delay = 0.05
    while True:
        pubsub, retry = None, None
        try:
            client = redis_sync()
            pubsub = client.pubsub()
            pubsub.subscribe(_channel(client))
            # A lost connection must surface at once (and the cache stop being trusted), not after redis-py's
            # reconnection retries; the connection gets its own policy back before it returns to the pool.
            retry, pubsub.connection.retry = pubsub.connection.retry, Retry(NoBackoff(), 0)
            while True:
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    # (Re)subscribed: whatever was published while we were away is lost, so start afresh.
                    _invalidate("all")
                    _listening, delay = True, 0.05
                elif message["type"] == "message":
                    scope, _, nonce = message["data"].rpartition("|")
                    _invalidate(scope)
                    if nonce:
                        client.pipeline(transaction=False).rpush(ACK_KEY.format(nonce), 1) \
                            .expire(ACK_KEY.format(nonce), 10).execute()
        except Exception:
            if _listening:
                logger.warning("API key cache: invalidation listener lost Redis; lookups go to the database",
                               exc_info=True)
            _listening = False
            _invalidate("all")
        finally:
            if pubsub is not None:
                try:
                    if retry is not None and pubsub.connection is not None:
                        pubsub.connection.retry = retry
                    pubsub.close()
                except Exception:
                    pass
        time.sleep(delay)
        delay = min(delay * 2, 1.0)  # back within a second of Redis returning


def announce(scope: str) -> None:
    """Drop cached lookups in every process (`key:<hash>` or `all`), this one at once; returns when every
    listening process has acknowledged, or after ANNOUNCE_WAIT_SECONDS. Call after the change commits."""
    _invalidate(scope)
    nonce = os.urandom(8).hex()
    ack = ACK_KEY.format(nonce)
    try:
        client = redis_sync()
        receivers = client.publish(_channel(client), f"{scope}|{nonce}")
        deadline = time.monotonic() + ANNOUNCE_WAIT_SECONDS
        for _ in range(receivers):
            left = deadline - time.monotonic()
            if left <= 0 or client.blpop([ack], timeout=left) is None:
                logger.warning("API key cache: %s of %s processes acknowledged %s in time", _, receivers, scope)
                break
        client.delete(ack)
    except redis.RedisError:
        # Listeners that lost Redis distrust their caches until they subscribe again (see _listen).
        logger.warning("API key cache: could not announce %s", scope, exc_info=True)


def _cached(key_hash: str) -> tuple[bool, KeyIdentity | None]:
    _ensure_listener()
    entry = _cache.get(key_hash)
    if entry is not None and _listening and entry[0] > time.monotonic():
        return True, entry[1]
    return False, None


def _store(key_hash: str, identity: KeyIdentity | None, generation: int) -> None:
    if not _listening or generation != _generation:
        return  # an invalidation may have been missed, or raced this lookup
    if len(_cache) >= _MAX_ENTRIES:
        _cache.clear()
    _cache[key_hash] = (time.monotonic() + cache_ttl(), identity)


_MISS = object()


def _cache_lookup(secret: str | None) -> tuple[str | None, int, object]:
    """(key hash, cache generation, identity) for a secret; the identity is None for a secret that cannot be a
    key, or _MISS when the database must be asked (then `_store` the answer under the generation read here)."""
    if not secret or not secret.startswith(API_KEY_PREFIX) or len(secret) > 200:
        return None, 0, None
    key_hash = hash_secret(secret)
    hit, identity = _cached(key_hash)
    return key_hash, _generation, identity if hit else _MISS


async def aauthenticate_key(secret: str | None) -> KeyIdentity | None:
    """The identity of an active, unexpired key, or None. Hits Postgres at most once per key per TTL; a cached
    key's expiry is checked on every call."""
    key_hash, generation, identity = _cache_lookup(secret)
    if identity is _MISS:
        identity = await _aload(key_hash)
        _store(key_hash, identity, generation)
    return None if identity is not None and identity.expired else identity


def authenticate_key(secret: str | None) -> KeyIdentity | None:
    """Sync twin for DRF (runs in a thread)."""
    key_hash, generation, identity = _cache_lookup(secret)
    if identity is _MISS:
        identity = _load(key_hash)
        _store(key_hash, identity, generation)
    return None if identity is not None and identity.expired else identity


def key_cache_clear() -> None:
    """This process's cache only (tests); changes are announced to every process by the receivers below."""
    _invalidate("all")


def _forget_key(key_hash: str, key_id: int) -> None:
    from .ratelimit import mark_revoked

    mark_revoked(key_id)
    announce(f"key:{key_hash}")


@receiver(post_save, sender=ApiKey, dispatch_uid="proxy_api_key_saved")
def _api_key_saved(sender, instance: ApiKey, created: bool, **kwargs):
    key_hash, key_id = instance.key_hash, instance.pk
    if instance.revoked_at is not None:
        transaction.on_commit(lambda: _forget_key(key_hash, key_id))
    elif not created:  # renamed, or its limits, tiers or expiry changed
        transaction.on_commit(lambda: announce(f"key:{key_hash}"))


@receiver(post_save, sender=Membership, dispatch_uid="proxy_membership_saved")
@receiver(post_delete, sender=Membership, dispatch_uid="proxy_membership_deleted")
@receiver(post_save, sender=User, dispatch_uid="proxy_user_saved")
@receiver(post_save, sender=Tenant, dispatch_uid="proxy_tenant_saved")
@receiver(post_save, sender=Plan, dispatch_uid="proxy_plan_saved")
def _tenant_or_plan_saved(sender, update_fields=None, **kwargs):
    if sender is User and update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # every login saves this; it changes nothing a key lookup holds
    transaction.on_commit(lambda: announce("all"))
