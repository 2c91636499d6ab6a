"""The fast path of the chat's SSE stream: raw ASGI, ahead of Django's middleware (see kiwiclaw/asgi.py).

Every turn opens one stream, right after its POST, so its cost sits between the user pressing Enter and the
first word. Through Django, the connection paid the middleware stack's thread hops and three queries
(session, user, membership) on the process's one sync thread, queued behind every other request's; here it
checks the stream token (an HMAC, see conversations/sse.py) and goes straight to Redis. The database is only
asked for the final rendered message, on a worker thread.

`serve` answers only requests it can check; anything else (no token, a bad or expired one, another session's)
returns False before sending a byte, and the caller hands the request to Django, whose view logs the session
in and answers 404 for someone else's message exactly as for a missing one.

A token outlives what it proves (6 h), so before the stream opens one Lua script in Redis asks (tenants/
revocation.py): is the session still in the cache (logout, expiry and flush delete it), is the tenant not
suspended, has the user not left the tenant or changed their password since the token was made? Any "no",
and a Redis error, hands the request to Django's view, which decides from the session and the database: the
check can only send a stream the slow way, never open one. It costs one Redis round trip, small beside a
stream's time from Enter to the first word (bench/chat_latency.py; figures in bench/README.md, "Chat").
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
from infra.redis import Script
from tenants import revocation
from tenants.models import Tenant, User

from . import sse

logger = logging.getLogger(__name__)

PATH = re.compile(r"^/chat/(\d+)/messages/(\d+)/stream/$")

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx and friends must not buffer the stream
    # What Django's security and clickjacking middleware would add to the view's answer.
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", (getattr(settings, "SECURE_REFERRER_POLICY", None) or "same-origin").encode("latin-1")),
    (b"x-frame-options", getattr(settings, "X_FRAME_OPTIONS", "DENY").encode("latin-1")),
]

# KEYS: the session's cache key, the tenant's suspension flag, the user's left-the-tenant flag, the user's
# sessions-ended flag, since when the flags are whole; ARGV: when the token was made. Returns "" when the
# stream may open, else why not.
_REFUSAL = Script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 'session ended' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'tenant suspended' end
local made = tonumber(ARGV[1])
local ready = tonumber(redis.call('GET', KEYS[5]))
if not ready or made < ready then return 'access flags reloaded since the token was made' end
local left = tonumber(redis.call('GET', KEYS[3]))
if left and left >= made then return 'left the tenant' end
local ended = tonumber(redis.call('GET', KEYS[4]))
if ended and ended >= made then return 'sessions ended' end
return ''
""")


async def refusal(*, session_key: str, tenant_id: int, user_id: int, made: int) -> str:
    """Why a valid token must not open a stream on the fast path ("" when it may)."""
    keys = [revocation.session_cache_key(session_key), revocation.SUSPENDED_KEY.format(tenant_id),
            revocation.LEFT_KEY.format(tenant_id, user_id), revocation.USER_KEY.format(user_id),
            revocation.READY_KEY]
    try:
        return await _REFUSAL.arun(keys, [made])
    except Exception as exc:  # Redis unreachable: Django's view decides
        return f"access check failed: {exc!r}"


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
    opened = sse.stream_token_open(token, session_key=session_key)
    if match is None or opened is None or opened[2:4] != (int(match[1]), int(match[2])):
        return False
    tenant_id, user_id, conversation_id, message_id, made = opened
    why = await refusal(session_key=session_key, tenant_id=tenant_id, user_id=user_id, made=made)
    if why:
        logger.info("SSE fast path refused message %s (%s): Django's view decides", message_id, why)
        return False
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
