"""The provider HTTP client: one per event loop per process.

httpx's API (`httpx.Request` / `httpx.Response`, httpx's exceptions) on aiohttp's transport (`httpx-aiohttp`):
httpx's own transport (httpcore) cost several times the CPU per call and a long tail at 32 concurrent calls
(the candidates' figures are in bench/README.md, "Proxy API"). The libraries provide the rest:
TLS (httpx's SSL context: certifi, or SSL_CERT_FILE / SSL_CERT_DIR), proxies from the environment
(HTTPS_PROXY, NO_PROXY and friends, read once when the client is made), keep-alive pooling (aiohttp's
connector: ROUTING_POOL_MAX_CONNECTIONS, idle connections kept ROUTING_POOL_KEEPALIVE_EXPIRY seconds) and
timeouts (ROUTING_CONNECT_TIMEOUT to connect; of silence while reading, what the call names — dispatch's
per-endpoint deadlines — or else ROUTING_READ_TIMEOUT; httpx's timeout is aiohttp's `sock_read` underneath).

A response not read to its end when it is closed (a cancelled or stopped caller) closes its connection
instead of returning it to the pool, so no later call can read the rest of an earlier answer.

No cookies: one client carries every tenant's calls, so a cookie a provider sets on one call must not ride
along on the next (httpx's jar and aiohttp's are both turned off; skipping them also saves CPU per call).
"""

from __future__ import annotations

import http.cookiejar
import urllib.request
from collections.abc import Mapping

import aiohttp
import httpx
from django.conf import settings
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient

from .loops import PerLoop


def http_timeout(read: float | None = None) -> httpx.Timeout:
    read = settings.ROUTING_READ_TIMEOUT if read is None else read
    return httpx.Timeout(connect=settings.ROUTING_CONNECT_TIMEOUT, read=read, write=read, pool=read)


class _NoCookies(http.cookiejar.CookieJar):
    def extract_cookies(self, response, request) -> None:
        pass  # keep none


def _session() -> aiohttp.ClientSession:
    """aiohttp's session under the transport, made on the first call (inside the running loop)."""
    connector = aiohttp.TCPConnector(limit=settings.ROUTING_POOL_MAX_CONNECTIONS,
                                     keepalive_timeout=settings.ROUTING_POOL_KEEPALIVE_EXPIRY,
                                     ssl=httpx.create_ssl_context())
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def _new_client() -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=settings.ROUTING_POOL_MAX_CONNECTIONS,
        max_keepalive_connections=settings.ROUTING_POOL_MAX_KEEPALIVE,
        keepalive_expiry=settings.ROUTING_POOL_KEEPALIVE_EXPIRY,
    )
    # trust_env: httpx reads the proxy variables once, here, and routes a proxied host through an aiohttp
    # transport of its own (HttpxAiohttpClient's proxy mounts).
    transport = AiohttpTransport(client=_session)
    client = HttpxAiohttpClient(transport=transport, timeout=http_timeout(), limits=limits, follow_redirects=False,
                                trust_env=True, cookies=_NoCookies())
    return _LoopClient(client, None if urllib.request.getproxies() else transport)


class _LoopClient:
    """A loop's client, and its transport when no proxy from the environment can apply (none is set).

    provider_send hands a request straight to that transport, skipping httpx.AsyncClient.send's own steps
    (auth, redirects, cookies, event hooks, proxy mounts), none of which a provider call uses here: about 60-75
    µs of CPU less per call (bench/README.md, "Proxy API"). The transport is the same one the client sends
    through, so pooling, timeouts (the request's `timeout` extension, set by build_request) and closing a
    response not read to its end behave the same."""

    __slots__ = ("client", "direct")

    def __init__(self, client: httpx.AsyncClient, direct: AiohttpTransport | None):
        self.client, self.direct = client, direct


_clients: PerLoop[_LoopClient] = PerLoop(_new_client)


def provider_client() -> httpx.AsyncClient:
    """The running event loop's provider client."""
    return _clients.get().client


async def provider_send(method: str, url: str, *, content: bytes, headers: Mapping[str, str],
                        stream: bool = False, read_timeout: float | None = None) -> httpx.Response:
    """One provider call on the running loop's client. Unless `stream`, the body is read and the connection
    released before this returns; a streamed response must be closed by the caller (`await response.aclose()`,
    in a finally), as with `httpx.AsyncClient.stream`. Raises httpx's exceptions (httpx.ReadTimeout after
    `read_timeout` seconds of silence: the status line, then between any two reads of the body; the client's
    ROUTING_READ_TIMEOUT when None)."""
    loop_client = _clients.get()
    client = loop_client.client
    timeout = httpx.USE_CLIENT_DEFAULT if read_timeout is None else http_timeout(read_timeout)
    request = client.build_request(method, url, content=content, headers=headers, timeout=timeout)
    if loop_client.direct is None:
        return await client.send(request, stream=stream)
    response = await loop_client.direct.handle_async_request(request)
    if not stream:
        try:
            await response.aread()
        finally:
            await response.aclose()
    return response


async def aclose_provider_client() -> None:
    """Close the running loop's client (before closing a loop you made, e.g. in a worker thread)."""
    loop_client = _clients.pop()
    if loop_client is not None:
        await loop_client.client.aclose()
