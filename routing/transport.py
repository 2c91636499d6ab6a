"""The upstream HTTP client and the Redis client of the routing core: one of each per event loop per process.

Both are bound to the event loop that first uses them, and the chat worker may
run event loops in several threads, so clients are cached per loop (a WeakKeyDictionary: a closed loop that
is garbage-collected takes its clients with it). Never build a client per request: that would throw away
the connection pool and pay a TCP (and TLS) handshake each time.

Provider calls go through `http_send`: an httpx.Request handed straight to routing.http1's lean HTTP/1.1
transport (a third of httpx's default transport's CPU per call), skipping httpx.AsyncClient's per-request
layers — URL merging, the cookie jar, auth and redirect handling, event hooks; ~0.2 ms of CPU per call, none
of it used by a provider call. Together that was most of the routing core's overhead on the proxy's hot
path. When the environment configures an HTTP proxy (HTTPS_PROXY and friends), calls go through an
httpx.AsyncClient with httpx's own transport, which honours it.

Redis: `script_client()` is routing.resp's pipelined client, for the short Lua scripts of the breaker and
the proxy's rate limits (a quarter of redis-py's CPU per command).
"""

from __future__ import annotations

import asyncio
import threading
import urllib.request
import weakref
from collections.abc import Mapping

import httpx
from django.conf import settings

from .http1 import LeanHTTPTransport
from .resp import ScriptClient

# What httpx.AsyncClient would add, minus Accept-Encoding: provider answers are small and streamed, and
# uncompressed ones cost no CPU to read.
_DEFAULT_HEADERS = {"accept": "*/*", "user-agent": f"python-httpx/{httpx.__version__}"}

_lock = threading.Lock()
_http_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_redis_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def http_timeout(read: float | None = None) -> httpx.Timeout:
    read = settings.ROUTING_READ_TIMEOUT if read is None else read
    return httpx.Timeout(connect=settings.ROUTING_CONNECT_TIMEOUT, read=read, write=read, pool=read)


class _Upstream:
    """The running loop's provider HTTP: the client, and its lean transport unless a proxy is configured."""

    _MAX_URLS = 1024

    def __init__(self):
        limits = httpx.Limits(
            max_connections=settings.ROUTING_POOL_MAX_CONNECTIONS,
            max_keepalive_connections=settings.ROUTING_POOL_MAX_KEEPALIVE,
            keepalive_expiry=settings.ROUTING_POOL_KEEPALIVE_EXPIRY,
        )
        self.lean = None if _environment_proxies() else LeanHTTPTransport(limits=limits)
        self.client = httpx.AsyncClient(timeout=http_timeout(), limits=limits, transport=self.lean,
                                        follow_redirects=False)
        self.extensions = {"timeout": http_timeout().as_dict()}
        self._urls: dict[str, httpx.URL] = {}

    def url(self, url: str) -> httpx.URL:
        """Parsed once per endpoint URL: parsing is a good part of building a request."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= self._MAX_URLS:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed


def _upstream() -> _Upstream:
    loop = asyncio.get_running_loop()
    upstream = _http_clients.get(loop)
    if upstream is None:
        with _lock:
            upstream = _http_clients.get(loop)
            if upstream is None:
                upstream = _http_clients[loop] = _Upstream()
    return upstream


def http_client() -> httpx.AsyncClient:
    """The pooled upstream client of the running event loop (same pool as http_send)."""
    return _upstream().client


async def http_send(method: str, url: str, *, content: bytes, headers: Mapping[str, str],
                    stream: bool = False) -> httpx.Response:
    """One provider call on the running loop's pool, with the routing timeouts. Unless `stream`, the body is
    read and the connection released before this returns; a streamed response must be closed by the caller
    (`await response.aclose()`, in a finally), as with `httpx.AsyncClient.stream`. Raises httpx's exceptions."""
    upstream = _upstream()
    if upstream.lean is None:
        client = upstream.client
        return await client.send(client.build_request(method, url, content=content, headers=headers),
                                 stream=stream)
    request = httpx.Request(method, upstream.url(url), content=content, headers={**_DEFAULT_HEADERS, **headers},
                            extensions=upstream.extensions)
    response = await upstream.lean.handle_async_request(request)
    response.request = request
    if not stream:
        try:
            await response.aread()
        finally:
            await response.aclose()
    return response


def _environment_proxies() -> bool:
    return any(scheme in ("http", "https", "all") for scheme in urllib.request.getproxies())


def script_client() -> ScriptClient:
    """The Redis client (breaker states, rate limits) of the running event loop: one pipelined connection,
    so a burst of hundreds of requests shares it instead of opening a connection each."""
    loop = asyncio.get_running_loop()
    client = _redis_clients.get(loop)
    if client is None:
        with _lock:
            client = _redis_clients.get(loop)
            if client is None:
                client = _redis_clients[loop] = ScriptClient(settings.REDIS_URL,
                                                             timeout=settings.ROUTING_REDIS_TIMEOUT)
    return client


async def close_loop_clients() -> None:
    """Close the running loop's clients (call before closing a loop you created, e.g. in a worker thread)."""
    loop = asyncio.get_running_loop()
    http = _http_clients.pop(loop, None)
    rds = _redis_clients.pop(loop, None)
    if http is not None:
        await http.client.aclose()
    if rds is not None:
        await rds.aclose()
