"""The SSE stream of one assistant message, read from its Redis Stream.

Events: `delta` (one per stream entry, `id:` = the Redis entry id, data = an HTML-escaped `<span>`), and one
`final` carrying the rendered message (model badge, tokens, cost) plus an out-of-band update of the
conversation's running cost; then the response ends. A reconnect sends `Last-Event-ID` and resumes after that
entry, so nothing is lost or repeated. A finished message (or one whose stream has expired) gets its final
state from the database.

Two ways in, one event generator (`events`):
- the fast path (`conversations/sse_asgi.py`, ahead of Django's middleware in kiwiclaw/asgi.py) for URLs that
  carry a stream token: the page and the send view put `?t=<token>` in every `sse-connect`. The token is
  signed with the secret key and salted with the viewer's session key, and names the tenant, the user, the
  conversation and the message; so checking it needs no database and no session load, and it is worthless
  without the session cookie it was made for. Tokens last `CHAT_STREAM_TOKEN_MAX_AGE` (keep it under
  tenants.revocation.FLAG_TTL_SECONDS), but the fast path also asks Redis, in one round trip, whether the
  session still exists and whether the tenant was suspended, or the user left it, since the token was made.
- this Django view for everything else (no token, a token that does not check out, a WSGI server): session
  login and the tenant middleware, then the selectors. Both give the same 404 for someone else's message.

Reading Redis: a stream reads its first entries itself (an XREAD with a short BLOCK), then joins the web
process's StreamHub (conversations.streams), which reads every open stream in one XREAD. A client that goes
away cancels the generator at its next await, which leaves the hub. Database connections are given back to the
pool after each use, since a stream may stay open for minutes.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from html import escape

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signing
from django.db import connection
from django.http import Http404, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import reverse

from tenants import revocation

from . import selectors, streams
from .models import Message

logger = logging.getLogger("conversations.sse")

TOKEN_SALT = "kiwiclaw.chat.stream:"


# --- stream tokens ---


def stream_token(*, session_key: str, tenant_id: int, user_id: int, conversation_id: int, message_id: int) -> str:
    signer = signing.TimestampSigner(salt=TOKEN_SALT + session_key)
    return signer.sign(f"{tenant_id}.{user_id}.{conversation_id}.{message_id}")


def stream_token_open(token: str, *, session_key: str,
                      max_age: float | None = None) -> tuple[int, int, int, int, int] | None:
    """(tenant id, user id, conversation id, message id, when it was made in Unix seconds) of a valid token
    made for this session, else None."""
    if not token or not session_key:
        return None
    signer = signing.TimestampSigner(salt=TOKEN_SALT + session_key)
    max_age = settings.CHAT_STREAM_TOKEN_MAX_AGE if max_age is None else max_age
    try:
        value = signer.unsign(token, max_age=max_age)
        tenant_id, user_id, conversation_id, message_id = (int(part) for part in value.split("."))
        made = signing.b62_decode(token.rsplit(signer.sep, 2)[-2])  # value:timestamp:signature
    except (signing.BadSignature, ValueError):
        return None
    return tenant_id, user_id, conversation_id, message_id, made


def stream_token_check(token: str, *, session_key: str, max_age: float | None = None) -> tuple[int, int, int, int] | None:
    """(tenant id, user id, conversation id, message id) of a valid token made for this session, else None."""
    opened = stream_token_open(token, session_key=session_key, max_age=max_age)
    return None if opened is None else opened[:4]


def stream_url(request, message: Message) -> str:
    """The SSE URL of `message` for the page being rendered, with a token when the request has a session."""
    url = reverse("conversations:stream", args=[message.conversation_id, message.pk])
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    user = getattr(request, "user", None)
    if not session_key or user is None or not user.is_authenticated:
        return url
    token = stream_token(session_key=session_key, tenant_id=message.tenant_id, user_id=user.pk,
                         conversation_id=message.conversation_id, message_id=message.pk)
    return f"{url}?t={token}"


# --- the events ---


def _db(fn, *, thread_sensitive=True):
    """Run `fn` on a thread (the request's sync thread, or with thread_sensitive=False any pool thread) and
    hand its connection back to the pool afterwards."""

    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:  # (only inside a test's transaction)
                connection.close()

    return sync_to_async(wrapped, thread_sensitive=thread_sensitive)


def final_html_sync(*, tenant, user, conversation_id, message_id, request) -> str | None:
    """The finished message rendered as on the page, with the conversation's new running cost; "" for a message
    that is gone (an empty final removes the placeholder); None while the message is unfinished."""
    try:
        message = selectors.message_get(
            tenant=tenant, user=user, message_id=message_id, conversation_id=conversation_id
        )
    except Message.DoesNotExist:
        return ""
    if not message.is_finished:
        return None
    conversation = message.conversation
    cost = selectors.conversation_cost(tenant=tenant, user=user, conversation=conversation)
    turn = selectors.turn_get(tenant=tenant, user=user, message=message)  # for the ‹ 2/3 › of its versions
    return render_to_string(
        "conversations/chat.html#final",
        {"m": message, "t": turn, "conversation": conversation, "running_cost": cost},
        request=request,
    )


final_html = _db(final_html_sync)
# The fast path has no request thread: its final renders go to the pool instead of queueing on one thread.
final_html_pooled = _db(final_html_sync, thread_sensitive=False)


def _event(name: str, data: str, event_id: str | None = None) -> str:
    # Each line of the payload needs its own `data:` prefix; EventSource joins them with "\n".
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = f"id: {event_id}\n" if event_id else ""
    return head + f"event: {name}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def cursor_from(last_event_id: str | None) -> str:
    last_event_id = last_event_id or ""
    return last_event_id if streams.STREAM_ID_RE.match(last_event_id) else "0-0"


async def events(*, message_id: int, cursor: str, final: Callable[[], Awaitable[str | None]],
                 finished: bool = False):
    """The SSE text of one message from `cursor` on. `final()` renders the finished message from the database
    (None while it is unfinished). With `finished` the final state is sent at once.

    The stream reads Redis itself until its first entries have arrived (so the first words come as soon as
    they are written), then joins the process's StreamHub, which reads every open stream in one XREAD."""
    yield "retry: 1000\n\n"
    if finished:
        yield _event("final", await final() or "")
        return
    client = streams.async_redis()
    key = streams.stream_key(message_id)
    wait = settings.CHAT_SSE_BLOCK_MS / 1000
    last_sent = time.monotonic()
    last_db_check = None  # the database is asked when the stream is quiet and missing, then every recheck period
    sub = None
    try:
        while True:
            if sub is None:
                reply = await client.xread({key: cursor}, count=500, block=settings.CHAT_SSE_BLOCK_MS)
                entries = reply[0][1] if reply else []
            else:
                try:
                    entries = await asyncio.wait_for(sub.batches.get(), wait)
                except TimeoutError:
                    entries = []
                if isinstance(entries, Exception):
                    raise entries
            now = time.monotonic()
            chunk = []
            for entry_id, fields in entries:
                cursor = entry_id
                if fields.get("t") == streams.ENTRY_DELTA:
                    chunk.append(_event("delta", f"<span>{escape(fields.get('v', ''))}</span>", entry_id))
                elif fields.get("t") == streams.ENTRY_END:
                    if chunk:
                        yield "".join(chunk)
                    yield _event("final", await final() or "", entry_id)
                    return
            if chunk:
                yield "".join(chunk)
                last_sent = now
            if entries:
                if sub is None:
                    sub = streams.stream_hub().subscribe(key, cursor)
                continue
            if now - last_sent >= settings.CHAT_SSE_HEARTBEAT:
                yield ": keep-alive\n\n"
                last_sent = now
            # A quiet read: no end marker yet. The stream may have expired (or never started, for a turn that was
            # ended elsewhere): the database is the truth, and the final event replaces the whole message, so
            # nothing is lost by ending here. Asked at once when the stream is missing, else every recheck period.
            due = last_db_check is None and not await client.exists(key)
            if due or now - (last_db_check or now) >= settings.CHAT_SSE_DB_RECHECK:
                last_db_check = now
                html = await final()
                if html is not None:
                    yield _event("final", html)
                    return
            elif last_db_check is None:
                last_db_check = now
    finally:
        if sub is not None:
            streams.stream_hub().unsubscribe(sub)


# --- the Django view (session login) ---


@_db
def _load(request, conversation_id, message_id) -> Message | None:
    """The requested answer, or None. One hop to a thread for both the user and the message: the tenant
    middleware has already resolved `request.user` there (`request.auser()` would load it a second time)."""
    user, tenant = request.user, getattr(request, "tenant", None)
    if not user.is_authenticated or tenant is None:
        return None
    try:  # the fast path sends streams here until the access flags are whole again (tenants/revocation.py)
        revocation.access_flags_ensure()
    except redis.RedisError:
        logger.warning("access flags not rebuilt: Redis unavailable", exc_info=True)
    try:
        message = selectors.message_get(
            tenant=tenant, user=user, message_id=message_id, conversation_id=conversation_id
        )
    except Message.DoesNotExist:
        return None
    return message if message.role == Message.ROLE_ASSISTANT else None


async def message_stream(request, conversation_id, message_id):
    message = await _load(request, conversation_id, message_id)
    if message is None:
        raise Http404("No such message.")
    tenant, user = request.tenant, request.user

    def final():
        return final_html(tenant=tenant, user=user, conversation_id=conversation_id, message_id=message.pk,
                          request=request)

    response = StreamingHttpResponse(
        events(message_id=message.pk, cursor=cursor_from(request.headers.get("Last-Event-ID")), final=final,
               finished=message.is_finished),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx and friends must not buffer the stream
    return response
