"""The upstream HTTP client and the Redis client of the routing core: one of each per event loop per process.

httpx and redis.asyncio clients are bound to the event loop that first uses them, and the chat worker may
run event loops in several threads, so clients are cached per loop (a WeakKeyDictionary: a closed loop that
is garbage-collected takes its clients with it). Never build a client per request: that would throw away
the connection pool and pay a TCP (and TLS) handshake each time.

The HTTP client's wire is routing.http1's lean HTTP/1.1 transport (a third of httpx's default transport's
CPU per call, which was most of the routing core's overhead on the proxy's hot path); when the environment
configures an HTTP proxy (HTTPS_PROXY and friends) the client keeps httpx's own transport, which honours it.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.request
import weakref

import httpx
import redis.asyncio as aioredis
from django.conf import settings

from .http1 import LeanHTTPTransport

_lock = threading.Lock()
_http_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_redis_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def http_timeout(read: float | None = None) -> httpx.Timeout:
    read = settings.ROUTING_READ_TIMEOUT if read is None else read
    return httpx.Timeout(connect=settings.ROUTING_CONNECT_TIMEOUT, read=read, write=read, pool=read)


def http_client() -> httpx.AsyncClient:
    """The pooled upstream client of the running event loop."""
    loop = asyncio.get_running_loop()
    client = _http_clients.get(loop)
    if client is None:
        with _lock:
            client = _http_clients.get(loop)
            if client is None:
                limits = httpx.Limits(
                    max_connections=settings.ROUTING_POOL_MAX_CONNECTIONS,
                    max_keepalive_connections=settings.ROUTING_POOL_MAX_KEEPALIVE,
                    keepalive_expiry=settings.ROUTING_POOL_KEEPALIVE_EXPIRY,
                )
                transport = None if _environment_proxies() else LeanHTTPTransport(limits=limits)
                client = httpx.AsyncClient(timeout=http_timeout(), limits=limits, transport=transport,
                                           follow_redirects=False)
                _http_clients[loop] = client
    return client


def _environment_proxies() -> bool:
    return any(scheme in ("http", "https", "all") for scheme in urllib.request.getproxies())


def redis_client() -> aioredis.Redis:
    """The async Redis client (breaker state) of the running event loop.

    A bounded, blocking pool: breaker reads are one short command each, so a burst of hundreds of turns shares
    a few dozen connections (waiting briefly for one) instead of opening one connection per turn at the same
    moment, which on a busy loop ended in connect timeouts.
    """
    loop = asyncio.get_running_loop()
    client = _redis_clients.get(loop)
    if client is None:
        with _lock:
            client = _redis_clients.get(loop)
            if client is None:
                pool = aioredis.BlockingConnectionPool.from_url(
                    settings.REDIS_URL, max_connections=settings.ROUTING_REDIS_MAX_CONNECTIONS,
                    timeout=settings.ROUTING_REDIS_TIMEOUT, socket_connect_timeout=settings.ROUTING_REDIS_TIMEOUT,
                    socket_timeout=settings.ROUTING_REDIS_TIMEOUT,
                )
                client = aioredis.Redis(connection_pool=pool)
                _redis_clients[loop] = client
    return client


async def close_loop_clients() -> None:
    """Close the running loop's clients (call before closing a loop you created, e.g. in a worker thread)."""
    loop = asyncio.get_running_loop()
    http = _http_clients.pop(loop, None)
    rds = _redis_clients.pop(loop, None)
    if http is not None:
        await http.aclose()
    if rds is not None:
        await rds.aclose()
