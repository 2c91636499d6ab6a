"""The provider HTTP client: one per event loop per process.

httpx's API (`httpx.Request` / `httpx.Response`, httpx's exceptions) on aiohttp's transport (`httpx-aiohttp`):
httpx's own transport (httpcore) cost three to five times the CPU per call and, at 32 concurrent calls, p99
latencies of 100-400 ms on our 2-core machines (bench/README.md, "Proxy API"). The libraries provide the rest:
TLS (httpx's SSL context: certifi, or SSL_CERT_FILE / SSL_CERT_DIR), proxies from the environment
(HTTPS_PROXY, NO_PROXY and friends, read once when the client is made), keep-alive pooling (aiohttp's
connector: ROUTING_POOL_MAX_CONNECTIONS, idle connections kept ROUTING_POOL_KEEPALIVE_EXPIRY seconds) and
timeouts (ROUTING_CONNECT_TIMEOUT to connect, ROUTING_READ_TIMEOUT of silence while reading).

A response not read to its end when it is closed (a cancelled or stopped caller) closes its connection
instead of returning it to the pool, so no later call can read the rest of an earlier answer.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from django.conf import settings
from httpx_aiohttp import HttpxAiohttpClient

from .loops import PerLoop


def http_timeout(read: float | None = None) -> httpx.Timeout:
    read = settings.ROUTING_READ_TIMEOUT if read is None else read
    return httpx.Timeout(connect=settings.ROUTING_CONNECT_TIMEOUT, read=read, write=read, pool=read)


def _new_client() -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=settings.ROUTING_POOL_MAX_CONNECTIONS,
        max_keepalive_connections=settings.ROUTING_POOL_MAX_KEEPALIVE,
        keepalive_expiry=settings.ROUTING_POOL_KEEPALIVE_EXPIRY,
    )
    return HttpxAiohttpClient(timeout=http_timeout(), limits=limits, follow_redirects=False, trust_env=True)


_clients: PerLoop[httpx.AsyncClient] = PerLoop(_new_client)


def provider_client() -> httpx.AsyncClient:
    """The running event loop's provider client."""
    return _clients.get()


async def provider_send(method: str, url: str, *, content: bytes, headers: Mapping[str, str],
                        stream: bool = False) -> httpx.Response:
    """One provider call on the running loop's client. Unless `stream`, the body is read and the connection
    released before this returns; a streamed response must be closed by the caller (`await response.aclose()`,
    in a finally), as with `httpx.AsyncClient.stream`. Raises httpx's exceptions."""
    client = _clients.get()
    return await client.send(client.build_request(method, url, content=content, headers=headers), stream=stream)


async def aclose_provider_client() -> None:
    """Close the running loop's client (before closing a loop you made, e.g. in a worker thread)."""
    client = _clients.pop()
    if client is not None:
        await client.aclose()
