"""Raw ASGI entry for /v1, mounted ahead of Django in kiwiclaw/asgi.py.

Why: Django's middleware stack in async mode hops to a thread for every MiddlewareMixin hook, and none of
it (sessions, auth, CSRF, messages, tenants) applies to API-key requests, so this entry skips it
(`bench/proxy_latency.py --django-views` measures both ways). The request flow is the same `handler.handle` the Django
views call. This entry also watches for the client going away mid-stream and stops the stream, so the
call is cut short and billed for the tokens so far. After the last byte it waits for the call's bookkeeping
(`ProxyResponse.finished`: the usage row is written after the answer, see handler.py), so the row is in the
ledger before this call returns.

Importing this module also freezes the objects the process holds at that point out of the cyclic garbage
collector (`gc.freeze`) — keep it: Django, its apps and every imported library are the bulk of what a full
collection walks, and such a pause stalls every request in flight in that worker (the proxy's p99; measured
by bench/proxy_latency.py, figures in bench/README.md, "Proxy API"). The freeze is process-wide but
lives here because this is the hook every served process runs once Django is set up: kiwiclaw/asgi.py imports
this module after `get_asgi_application()`, and the documented server (granian `--interface asginl`, uvicorn
`--lifespan off`) sends no lifespan events to hook into. The collection thresholds stay at Python's defaults:
a larger gen0 threshold made each young collection a long pause for no measurable CPU saving.
"""

import asyncio
import gc

from django.conf import settings

from infra.asgi import until_gone, wait_disconnect

from .errors import ANTHROPIC, OPENAI, ProxyError
from .handler import ProxyResponse, error_response, handle, handle_models, max_body_bytes, new_request_id

gc.collect()
gc.freeze()

ROUTES = {
    "/v1/chat/completions": ("POST", OPENAI),
    "/v1/messages": ("POST", ANTHROPIC),
    "/v1/models": ("GET", OPENAI),
}


# On every answer: what Django's security and clickjacking middleware add to its own, which /v1 runs ahead of.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", (getattr(settings, "SECURE_REFERRER_POLICY", None) or "same-origin").encode("latin-1")),
    (b"x-frame-options", getattr(settings, "X_FRAME_OPTIONS", "DENY").encode("latin-1")),
]


class _ClientGone(Exception):
    pass


async def _read_body(receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _admit(scope, receive):
    """Route, method and body checks. Returns a ready ProxyResponse, or (protocol, headers, body) to handle."""
    path = scope["path"].rstrip("/") or "/"
    route = ROUTES.get(path)
    protocol = route[1] if route else OPENAI
    if route is None:
        return error_response(ProxyError("not_found", f"Unknown endpoint {scope['path']}."), protocol,
                              new_request_id())
    if scope["method"] != route[0]:
        return error_response(ProxyError("method", f"Use {route[0]} for {path}."), protocol, new_request_id())
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    if route[0] == "GET":
        return None, headers, b""
    limit = max_body_bytes()
    try:
        too_big = int(headers.get("content-length") or 0) > limit
    except ValueError:
        too_big = False
    body = None if too_big else await _read_body(receive, limit)
    if body is None:
        error = ProxyError("too_large", f"The request body is over the {limit} byte limit.")
        return error_response(error, protocol, new_request_id())
    return protocol, headers, body


async def app(scope, receive, send) -> None:
    try:
        admitted = await _admit(scope, receive)
    except _ClientGone:
        return
    if isinstance(admitted, ProxyResponse):
        return await _send(admitted, send)
    protocol, headers, body = admitted
    # One reader of `receive` for the rest of the request: it only reports the client leaving.
    gone = asyncio.ensure_future(wait_disconnect(receive))
    try:
        work = asyncio.ensure_future(handle_models(headers) if protocol is None else handle(protocol, headers, body))
        if await until_gone(work, gone):
            return
        resp = work.result()
        try:
            if resp.stream is None:
                return await _send(resp, send)
            await send({"type": "http.response.start", "status": resp.status, "headers": _encode(resp.headers)})

            async def pump():
                async for chunk in resp.stream:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})

            try:
                await until_gone(asyncio.ensure_future(pump()), gone)
            finally:
                await resp.stream.aclose()  # runs the relay's `finally`: a call still running is told to stop
        finally:
            if resp.finished is not None:
                # Shielded: the call is detached, and being cancelled here must not cancel its bookkeeping.
                await asyncio.shield(resp.finished)
    finally:
        gone.cancel()


def _encode(headers) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers] + SECURITY_HEADERS


async def _send(resp: ProxyResponse, send) -> None:
    await send({"type": "http.response.start", "status": resp.status, "headers": _encode(resp.headers)})
    await send({"type": "http.response.body", "body": resp.body})
