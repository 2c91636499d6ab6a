"""Django's cache, as the app configures it: one Redis client per process, whatever the request context."""

import asyncio
import threading

from django.core.cache import caches


def _client_in_new_context():
    """The cache client seen by a fresh asyncio task, as a new ASGI request would see it."""

    async def get():
        cache = caches["default"]
        cache.set("kc-test-shared-client", "yes", 5)
        return cache._cache, cache.get("kc-test-shared-client")

    return asyncio.run(get())


def test_every_request_context_shares_one_redis_client():
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(_client_in_new_context())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clients = {id(client) for client, _value in seen}
    assert [value for _client, value in seen] == ["yes"] * 3
    assert len(clients) == 1
    assert caches["default"]._cache is seen[0][0]
