"""Access that ends at once in every process: flags in Redis, read by the chat's SSE fast path.

The fast path (conversations/sse_asgi.py) proves who may read a stream with a signed token and the session
cookie, without Django's middleware or the database. These flags tell it what has changed since a token was
made (the session itself it finds in the cache, see `session_cache_key`):

- `kc:access:suspended:<tenant>`: the tenant is suspended. Set before the suspension commits, removed after a
  reactivation commits.
- `kc:access:left:<tenant>:<user>`: when (Unix seconds) the user last left the tenant.
- `kc:access:user:<user>`: when the user's password last changed, which ends their other sessions.

A token made at or before a flag's time is refused by the fast path and handed to Django's view, which decides
from the session and the database: a flag can only send a stream the slow way, never open one. So the flags
that end access are written before the change commits (a Redis error then rolls the change back), and the one
that restores it (reactivation) after. The timed flags outlive every token (`FLAG_TTL_SECONDS` > the stream
token's `CHAT_STREAM_TOKEN_MAX_AGE`, 6 h).

Redis may lose the flags (a restart without persistence, a flush). `kc:access:ready` says since when they are
whole: without it the fast path refuses every stream, and it refuses tokens made before it, since a lost
left-the-tenant or password flag cannot be rebuilt from the database. Those go through Django's view, which
checks the database and calls `access_flags_ensure` to write the suspensions again and set the mark.
"""

import functools
import time

from django.conf import settings
from django.contrib.sessions.backends.cached_db import KEY_PREFIX as SESSION_CACHE_PREFIX
from django.core.cache import caches
from django.db import transaction

from infra.redis import redis_sync

SUSPENDED_KEY = "kc:access:suspended:{}"
LEFT_KEY = "kc:access:left:{}:{}"
USER_KEY = "kc:access:user:{}"
READY_KEY = "kc:access:ready"
FLAG_TTL_SECONDS = 7 * 24 * 3600


@functools.cache
def _make_cache_key():
    # Django builds a cache object per async context; the key function is the same for all of them.
    return caches[settings.SESSION_CACHE_ALIAS].make_key


def session_cache_key(session_key: str) -> str:
    """The Redis key under which the cached_db session engine keeps `session_key`, gone once the session has
    ended (logout, expiry). With another session engine or cache server it is never found, which only sends
    every stream the slow way."""
    return _make_cache_key()(SESSION_CACHE_PREFIX + session_key)


def access_tenant_suspended(*, tenant_id: int, suspended: bool) -> None:
    """Call inside the transaction that changes the tenant's status."""
    key = SUSPENDED_KEY.format(tenant_id)
    if suspended:
        redis_sync().set(key, int(time.time()))
    else:
        transaction.on_commit(lambda: redis_sync().delete(key))


def access_member_left(*, tenant_id: int, user_id: int) -> None:
    """Call inside the transaction that removes the membership."""
    redis_sync().set(LEFT_KEY.format(tenant_id, user_id), int(time.time()), ex=FLAG_TTL_SECONDS)


def access_user_sessions_ended(*, user_id: int) -> None:
    """The user's password changed: streams opened from sessions older than now go through Django."""
    redis_sync().set(USER_KEY.format(user_id), int(time.time()), ex=FLAG_TTL_SECONDS)


def access_flags_ensure() -> bool:
    """Rebuild what the database can tell (the suspended tenants' flags) if Redis has lost the flags, then mark
    them whole from now. One EXISTS when nothing was lost; True when it rebuilt."""
    client = redis_sync()
    if client.exists(READY_KEY):
        return False
    from .models import Tenant

    now = int(time.time())
    pipe = client.pipeline(transaction=False)
    for tenant_id in Tenant.objects.filter(status=Tenant.STATUS_SUSPENDED).values_list("pk", flat=True):
        pipe.set(SUSPENDED_KEY.format(tenant_id), now)
    pipe.set(READY_KEY, now, nx=True)
    pipe.execute()
    return True
