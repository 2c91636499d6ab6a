"""Raw ASGI entry for /v1, mounted ahead of Django in kiwiclaw/asgi.py.

Why: Django's middleware stack in async mode hops to a thread for every MiddlewareMixin hook, and none of
it (sessions, auth, CSRF, messages, tenants) applies to API-key requests; skipping it roughly doubles
throughput (bench/proxy_latency.py measures both). The request flow is the same `handler.handle` the Django
views call. This entry also watches for the client going away mid-stream and stops the stream, so the
call is cut short and billed for the tokens so far.
"""

import asyncio

from .errors import ANTHROPIC, OPENAI, ProxyError
from .handler import ProxyResponse, error_response, handle, handle_models, max_body_bytes, new_request_id

ROUTES = {
    "/v1/chat/completions": ("POST", OPENAI),
    "/v1/messages": ("POST", ANTHROPIC),
    "/v1/models": ("GET", OPENAI),
}


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


async def _dispatch(scope, receive) -> ProxyResponse:
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
        return await handle_models(headers)
    limit = max_body_bytes()
    try:
        too_big = int(headers.get("content-length") or 0) > limit
    except ValueError:
        too_big = False
    body = None if too_big else await _read_body(receive, limit)
    if body is None:
        error = ProxyError("too_large", f"The request body is over the {limit} byte limit.")
        return error_response(error, protocol, new_request_id())
    return await handle(protocol, headers, body)


async def _wait_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_stream(resp: ProxyResponse, receive, send) -> None:
    async def pump():
        async for chunk in resp.stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    pump_task = asyncio.ensure_future(pump())
    watch_task = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait({pump_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not pump_task.done():
            pump_task.cancel()  # the client left: the relay's `finally` tells the call to stop
        watch_task.cancel()
        await asyncio.gather(pump_task, watch_task, return_exceptions=True)
        await resp.stream.aclose()


async def app(scope, receive, send) -> None:
    try:
        resp = await _dispatch(scope, receive)
    except _ClientGone:
        return
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    if resp.stream is None:
        await send({"type": "http.response.body", "body": resp.body})
    else:
        await _send_stream(resp, receive, send)
