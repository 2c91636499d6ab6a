"""A lean HTTP/1.1 transport for httpx, used by the routing core's provider calls (routing.transport).

Why: httpx's default transport (httpcore on anyio) costs about 1 ms of CPU per call on our 2-core machines —
its layers of context managers, cancel scopes and per-event h11 state machine — against ~0.3 ms for the whole
loopback round trip. On the proxy's hot path that was most of the routing core's overhead (bench/README.md,
"Proxy API"). This transport keeps httpx's API for callers — `httpx.AsyncClient`, `httpx.Request` /
`httpx.Response`, response decoding, and httpx's own exception classes (so routing.dispatch maps errors as
before) — and replaces only the wire: asyncio protocols, httptools' C parser (already a dependency), one
write per request, and a keep-alive pool per host.

Scope, deliberately small: HTTP/1.1 over TCP or TLS, one request at a time per connection; no proxies (the
caller uses httpx's own transport when the environment configures one); request bodies of known length
(or a streamed body, sent chunked); responses framed by content-length, chunked encoding, or the connection
closing. A connection goes back to the pool only when its response was read to the end and both sides keep
it alive; anything else (an error, a timeout, a cancelled caller, a body left unread) closes it.
No retries: a keep-alive connection the server closed in the same instant fails like it does with httpcore
(RemoteProtocolError), and the caller's fallback decides.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time

import httptools
import httpx

# Past this much unread body the connection stops reading from the socket until the consumer catches up.
_READ_HIGH_WATER = 256 * 1024


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: asyncio protocol and httptools callbacks."""

    def __init__(self, pool: LeanHTTPTransport, key: tuple):
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.in_request = False
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.until_close = False  # body delimited by the connection closing (no length, not chunked)
        self.keep_alive = False
        self.complete = False
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.reading_paused = False
        self.error: Exception | None = None
        self.request: httpx.Request | None = None
        self._waiter: asyncio.Future | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.in_request:  # bytes on an idle connection: nothing sane can follow
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"Malformed HTTP response: {exc}", request=self.request))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_closed()
        if self.in_request and not self.complete:
            if self.headers_done and self.until_close:
                self.complete = True
                self._wake()
            elif self.headers_done:
                self._fail(httpx.RemoteProtocolError("The server closed the connection mid-response.",
                                                     request=self.request))
            else:
                self._fail(httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                                     request=self.request))
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(httpx.WriteError("Connection closed while sending the request.",
                                                              request=self.request))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status < 200:  # an interim response (100 Continue): the real one follows
            self.headers = []
            return
        self.keep_alive = self.parser.should_keep_alive()
        framed = False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
                framed = True
        self.until_close = not framed and self.status not in (204, 304) and self.status >= 200
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _READ_HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.headers_done:  # the end of an interim response
            return
        self.complete = True
        self._wake()

    # -- used by the transport and the response stream -------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool._connection_closed(self)

    def close(self) -> None:
        self._mark_closed()
        if self.transport is not None:
            self.transport.close()

    def usable(self, now: float, expiry: float | None) -> bool:
        return (not self.closed and not self.transport.is_closing()
                and (expiry is None or now - self.idle_since < expiry))

    def start(self, request: httpx.Request) -> None:
        self.in_request = True
        self.request = request
        self.status = 0
        self.headers = []
        self.headers_done = self.complete = self.until_close = self.keep_alive = False
        self.chunks.clear()
        self.buffered = 0
        self.error = None

    async def send(self, data: bytes, timeout: float | None) -> None:
        self.transport.write(data)
        if self._write_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._wait_for(self._drain_waiter, timeout, httpx.WriteTimeout)
            finally:
                self._drain_waiter = None

    async def wait(self, timeout: float | None, timeout_error: type[httpx.TimeoutException]) -> None:
        """Until the parser has news (headers, body, end, error) or the timeout passes."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._wait_for(self._waiter, timeout, timeout_error)
        finally:
            self._waiter = None

    async def _wait_for(self, future: asyncio.Future, timeout: float | None,
                        timeout_error: type[httpx.TimeoutException]) -> None:
        if timeout is None:
            await future
            return
        # A bare call_later is much cheaper than asyncio.timeout() for the one wait per chunk.
        handle = asyncio.get_running_loop().call_later(timeout, _expire, future)
        try:
            await future
        except _Expired:
            raise timeout_error("Timed out waiting for the provider.", request=self.request) from None
        finally:
            handle.cancel()

    def take_body(self) -> bytes:
        data = self.chunks.popleft() if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()
        return data


class _Expired(Exception):
    pass


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(_Expired())


class _ResponseStream(httpx.AsyncByteStream):
    """The response body as it arrives. Reading it to the end returns the connection to the pool."""

    def __init__(self, pool: LeanHTTPTransport, conn: _Connection, read_timeout: float | None):
        self.pool = pool
        self.conn = conn
        self.read_timeout = read_timeout
        self.done = False

    async def __aiter__(self):
        conn = self.conn
        try:
            while True:
                if conn.chunks:
                    yield conn.take_body()
                    continue
                if conn.error is not None:
                    raise conn.error
                if conn.complete:
                    break
                await conn.wait(self.read_timeout, httpx.ReadTimeout)
        except BaseException:
            self._finish(reuse=False)
            raise
        self._finish(reuse=True)

    def _finish(self, *, reuse: bool) -> None:
        if self.done:
            return
        self.done = True
        conn = self.conn
        conn.in_request = False
        if reuse and conn.complete and conn.keep_alive and not conn.chunks and not conn.closed:
            self.pool._release(conn)
        else:
            conn.close()

    async def aclose(self) -> None:
        self._finish(reuse=self.conn.complete)


class LeanHTTPTransport(httpx.AsyncBaseTransport):
    """httpx transport: a keep-alive pool of HTTP/1.1 connections per (scheme, host, port), bound to the event
    loop that first uses it. `limits` as for httpx (max_connections, max_keepalive_connections,
    keepalive_expiry)."""

    def __init__(self, *, limits: httpx.Limits | None = None, ssl_context: ssl.SSLContext | None = None):
        limits = limits or httpx.Limits()
        self._max_connections = limits.max_connections
        self._max_idle = limits.max_keepalive_connections
        self._expiry = limits.keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[tuple, list[_Connection]] = {}
        self._idle_count = 0
        self._open = 0
        self._slot_waiters: collections.deque[asyncio.Future] = collections.deque()

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    # -- pool ------------------------------------------------------------------------------------------------

    def _connection_closed(self, conn: _Connection) -> None:
        self._open -= 1
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
            self._idle_count -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        """A connection was closed or went back to the pool: one request waiting at the limit may go on."""
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _release(self, conn: _Connection) -> None:
        if self._max_idle is not None and self._idle_count >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        conn.request = None
        self._idle.setdefault(conn.key, []).append(conn)
        self._idle_count += 1
        self._wake_one()

    def _take_idle(self, key: tuple) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: least likely to have been closed by the server
            self._idle_count -= 1
            if conn.usable(now, self._expiry):
                return conn
            conn.close()
        return None

    def _close_one_idle(self) -> bool:
        """Make room at the connection limit by closing the longest-idle connection of any host."""
        oldest = None
        for conns in self._idle.values():
            if conns and (oldest is None or conns[0].idle_since < oldest.idle_since):
                oldest = conns[0]
        if oldest is None:
            return False
        oldest.close()
        return True

    async def _acquire(self, key: tuple, request: httpx.Request, timeouts: dict) -> _Connection:
        conn = self._take_idle(key)
        if conn is not None:
            return conn
        if self._max_connections is not None and self._open >= self._max_connections:
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    while self._open >= self._max_connections:
                        if self._close_one_idle():
                            continue
                        waiter = asyncio.get_running_loop().create_future()
                        self._slot_waiters.append(waiter)
                        await waiter
                        conn = self._take_idle(key)
                        if conn is not None:
                            return conn
            except TimeoutError:
                raise httpx.PoolTimeout("No connection to the provider became free in time.",
                                        request=request) from None
        return await self._connect(key, request, timeouts.get("connect"))

    async def _connect(self, key: tuple, request: httpx.Request, timeout: float | None) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        conn = _Connection(self, key)
        self._open += 1
        try:
            async with asyncio.timeout(timeout):
                if scheme == "https":
                    await loop.create_connection(lambda: conn, host, port, ssl=self._ssl(), server_hostname=host)
                else:
                    await loop.create_connection(lambda: conn, host, port)
        except BaseException as exc:
            conn.closed = True
            self._connection_closed(conn)
            if isinstance(exc, TimeoutError):
                raise httpx.ConnectTimeout(f"Timed out connecting to {host}:{port}.", request=request) from None
            if isinstance(exc, OSError | ssl.SSLError):
                raise httpx.ConnectError(f"Could not connect to {host}:{port}: {exc}", request=request) from None
            raise
        return conn

    # -- httpx.AsyncBaseTransport ----------------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"Unsupported URL scheme {scheme!r}.", request=request)
        key = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        timeouts = request.extensions.get("timeout") or {}
        data = await _encode_request(request)
        conn = await self._acquire(key, request, timeouts)
        try:
            conn.start(request)
            await conn.send(data, timeouts.get("write"))
            read_timeout = timeouts.get("read")
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(read_timeout, httpx.ReadTimeout)
        except BaseException:
            conn.in_request = False
            conn.close()
            raise
        return httpx.Response(conn.status, headers=conn.headers,
                              stream=_ResponseStream(self, conn, read_timeout),
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        for conns in list(self._idle.values()):
            for conn in list(conns):
                conn.close()
        self._idle.clear()
        self._idle_count = 0


async def _encode_request(request: httpx.Request) -> bytes:
    """Request line, headers and body as one buffer (one write, one packet for a typical provider call)."""
    target = request.url.raw_path
    head = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    chunked = False
    for name, value in request.headers.raw:
        head += (name, b": ", value, b"\r\n")
        if name.lower() == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    head.append(b"\r\n")
    try:
        body = request.content
    except httpx.RequestNotRead:
        body = b"".join([part async for part in request.stream])
    if chunked:
        body = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
    head.append(body)
    return b"".join(head)
