"""Django's Redis cache backend, with one Redis client per process instead of one per request.

Django keeps a cache object per request context under ASGI, and each object builds its own redis-py client
and connection pool: every request that touched the cache (every page, through the cached sessions) opened a
new Redis connection. Here all cache objects of one configuration share one client, whose pool keeps its
connections (redis-py's pool is thread-safe and starts over after a fork).

Its pool is its own, not `infra.redis`'s: the cache stores pickled bytes, and infra's clients decode replies to
`str`. Set as `CACHES["default"]["BACKEND"] = "infra.cache.SharedRedisCache"`.
"""

import threading

from django.core.cache.backends.redis import RedisCache
from django.utils.functional import cached_property

_clients: dict = {}
_lock = threading.Lock()


class SharedRedisCache(RedisCache):
    @cached_property
    def _cache(self):
        key = (tuple(self._servers), repr(sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client
