"""The fast path of the chat's SSE stream: raw ASGI, ahead of Django's middleware (see kiwiclaw/asgi.py).

Every turn opens one stream, right after its POST, so its cost sits between the user pressing Enter and the
first word. Through Django, the connection paid the middleware stack's thread hops and three queries
(session, user, membership) on the process's one sync thread, queued behind every other request's; here it
checks the stream token (an HMAC, see conversations/sse.py) and goes straight to Redis. The database is only
asked for the final rendered message, on a worker thread.

`serve` answers only requests it can check; anything else (no token, a bad or expired one, another session's)
returns False before sending a byte, and the caller hands the request to Django, whose view logs the session
in and answers 404 for someone else's message exactly as for a missing one.
"""

import asyncio
import io
import logging
import re
from urllib.parse import parse_qs

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import parse_cookie
from django.middleware.csrf import CsrfViewMiddleware

from infra.asgi import until_gone, wait_disconnect
from tenants.models import Tenant, User

from . import sse

logger = logging.getLogger(__name__)

PATH = re.compile(r"^/chat/(\d+)/messages/(\d+)/stream/$")

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx and friends must not buffer the stream
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def wants(scope) -> bool:
    return scope["type"] == "http" and scope["method"] == "GET" and b"t=" in scope["query_string"] \
        and PATH.match(scope["path"]) is not None


def _header(scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


def _render_request(scope) -> ASGIRequest:
    """A Django request for rendering the final message: its Retry form needs the CSRF token of the browser's
    cookie, which CsrfViewMiddleware reads into the request."""
    request = ASGIRequest(scope, io.BytesIO())
    CsrfViewMiddleware(lambda r: None).process_request(request)
    return request


async def serve(scope, receive, send) -> bool:
    match = PATH.match(scope["path"])
    token = (parse_qs(scope["query_string"].decode("latin-1")).get("t") or [""])[0]
    session_key = parse_cookie(_header(scope, b"cookie")).get(settings.SESSION_COOKIE_NAME, "")
    checked = sse.stream_token_check(token, session_key=session_key)
    if match is None or checked is None or checked[2:] != (int(match[1]), int(match[2])):
        return False
    tenant_id, user_id, conversation_id, message_id = checked
    tenant, user = Tenant(pk=tenant_id), User(pk=user_id)  # the selectors only use their ids

    def final():
        return sse.final_html_pooled(tenant=tenant, user=user, conversation_id=conversation_id,
                                     message_id=message_id, request=_render_request(scope))

    stream = sse.events(message_id=message_id, cursor=sse.cursor_from(_header(scope, b"last-event-id")),
                        final=final)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})

    async def pump():
        async for text in stream:
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    pumping, gone = asyncio.ensure_future(pump()), asyncio.ensure_future(wait_disconnect(receive))
    try:
        # A client that leaves cancels the pump, which ends the Redis read at its next await.
        await until_gone(pumping, gone)
    finally:
        pumping.cancel()  # (done already, unless this request itself is being cancelled)
        gone.cancel()
        await stream.aclose()
    if pumping.done() and not pumping.cancelled() and pumping.exception() is not None:
        logger.error("SSE stream of message %s broke off", message_id, exc_info=pumping.exception())
    return True
