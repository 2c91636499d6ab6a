"""The SSE stream of one assistant message, read from its Redis Stream.

Events: `delta` (one per stream entry, `id:` = the Redis entry id, data = an HTML-escaped `<span>`), and one
`final` carrying the rendered message (model badge, tokens, cost) plus an out-of-band update of the
conversation's running cost; then the response ends. A reconnect sends `Last-Event-ID` and resumes after that
entry, so nothing is lost or repeated. A finished message (or one whose stream has expired) gets its final
state from the database at once.

The Redis read is an XREAD with a short BLOCK in a loop: a client that goes away cancels the generator at the
next await (Django cancels streaming responses on disconnect) and at worst one short read is left to finish.
Database connections are given back to the pool after each read, since a stream may stay open for minutes.
"""

import time
from html import escape

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import Http404, StreamingHttpResponse
from django.template.loader import render_to_string

from . import selectors, streams
from .models import Message


def _db(fn):
    """Run `fn` on the request's sync thread and hand the connection back to the pool afterwards."""

    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            if not connection.in_atomic_block:  # (only inside a test's transaction)
                connection.close()

    return sync_to_async(wrapped)


@_db
def _load(request, conversation_id, message_id) -> Message | None:
    """The requested answer, or None. One hop to the sync thread for both the user and the message: the tenant
    middleware has already resolved `request.user` there (`request.auser()` would load it a second time)."""
    user, tenant = request.user, getattr(request, "tenant", None)
    if not user.is_authenticated or tenant is None:
        return None
    try:
        message = selectors.message_get(
            tenant=tenant, user=user, message_id=message_id, conversation_id=conversation_id
        )
    except Message.DoesNotExist:
        return None
    return message if message.role == Message.ROLE_ASSISTANT else None


@_db
def _final_html(tenant, user, conversation_id, message_id, request) -> str | None:
    """The finished message rendered as on the page, with the conversation's new running cost, or None while
    the message is unfinished."""
    try:
        message = selectors.message_get(
            tenant=tenant, user=user, message_id=message_id, conversation_id=conversation_id
        )
    except Message.DoesNotExist:
        return ""  # deleted meanwhile: an empty final removes the placeholder
    if not message.is_finished:
        return None
    conversation = message.conversation
    cost = selectors.conversation_cost(tenant=tenant, user=user, conversation=conversation)
    return render_to_string(
        "conversations/chat.html#final",
        {"m": message, "conversation": conversation, "running_cost": cost},
        request=request,
    )


def _event(name: str, data: str, event_id: str | None = None) -> str:
    # Each line of the payload needs its own `data:` prefix; EventSource joins them with "\n".
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = f"id: {event_id}\n" if event_id else ""
    return head + f"event: {name}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


async def message_stream(request, conversation_id, message_id):
    message = await _load(request, conversation_id, message_id)
    if message is None:
        raise Http404("No such message.")
    tenant, user = request.tenant, request.user
    last_id = request.headers.get("Last-Event-ID", "")
    cursor = last_id if streams.STREAM_ID_RE.match(last_id) else "0-0"
    response = StreamingHttpResponse(
        _events(request, tenant, user, conversation_id, message, cursor), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx and friends must not buffer the stream
    return response


async def _events(request, tenant, user, conversation_id, message: Message, cursor: str):
    yield "retry: 1000\n\n"
    args = (tenant, user, conversation_id, message.pk, request)
    if message.is_finished:
        yield _event("final", await _final_html(*args) or "")
        return
    client = streams.async_redis()
    key = streams.stream_key(message.pk)
    block_ms = settings.CHAT_SSE_BLOCK_MS
    last_sent = last_db_check = time.monotonic()
    while True:
        reply = await client.xread({key: cursor}, count=500, block=block_ms)
        now = time.monotonic()
        for _key, entries in reply or ():
            chunk = []
            for entry_id, fields in entries:
                cursor = entry_id
                if fields.get("t") == streams.ENTRY_DELTA:
                    chunk.append(_event("delta", f"<span>{escape(fields.get('v', ''))}</span>", entry_id))
                elif fields.get("t") == streams.ENTRY_END:
                    if chunk:
                        yield "".join(chunk)
                    yield _event("final", await _final_html(*args) or "", entry_id)
                    return
            if chunk:
                yield "".join(chunk)
                last_sent = now
        if now - last_sent >= settings.CHAT_SSE_HEARTBEAT:
            yield ": keep-alive\n\n"
            last_sent = now
        if now - last_db_check >= settings.CHAT_SSE_DB_RECHECK:
            # No end marker yet: the stream may have expired or the turn was ended elsewhere. The database is
            # the truth; the final event replaces the whole message, so nothing is lost by ending here.
            last_db_check = now
            html = await _final_html(*args)
            if html is not None:
                yield _event("final", html)
                return
