"""Running one chat turn on a Celery worker.

Why this shape: a turn spends seconds to minutes waiting on a provider's stream and almost no CPU. The worker
runs Celery's thread pool (many cheap threads, see docs/architecture.md), and every thread hands its stream to
ONE asyncio event loop per process (`turn_loop()`), so hundreds of concurrent streams share one httpx
connection pool and one Redis pool instead of one loop and one set of connections per thread. The Celery
thread only does the database work before and after the stream, and gives its connection back to the pool
before streaming, so no connection is held while a stream is read.

An answer outlives the stores around it. Redis going away mid-answer (a restart loses every key) costs the live
view some deltas but not the answer: the publisher and the heartbeat keep retrying until Redis is back, and
redis-py reconnects by itself. The database going away at the end costs nothing either: the turn's final state
goes to the outbox (`lifecycle.turn_complete_later`) and is stored, `done` with its real counts, once the
database answers.
"""

import asyncio
import dataclasses
import logging
import threading
import time
import uuid

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from routing.core import route_stream
from routing.errors import AllEndpointsFailed, RoutingError
from routing.types import FINISH_CANCELLED, Done, TextDelta

from . import lifecycle, streams
from .models import Message

logger = logging.getLogger(__name__)

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()
# Turns currently streaming in this process (the bench reads it to report peak concurrency).
in_flight = 0
peak_in_flight = 0
_count_lock = threading.Lock()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (a project dependency): the turn loop reads every token of hundreds of streams,
    and uvloop's socket and timer handling costs a fraction of asyncio's in CPU."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def turn_loop() -> asyncio.AbstractEventLoop:
    """The process's shared event loop, started lazily in a daemon thread (after any fork)."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = _new_loop()
            thread = threading.Thread(target=loop.run_forever, name="chat-turn-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def turn_run(*, message_id: int) -> None:
    """Run one turn end to end. Safe to call twice for the same message: only a queued message is claimed."""
    run_id = uuid.uuid4()
    # The heartbeat starts with the stream (`_heartbeat`), a moment after the claim: the sweeper only judges turns
    # that started more than CHAT_HEARTBEAT_TTL ago, so it never mistakes a just-claimed turn for a dead one.
    try:
        claimed = lifecycle.turn_claim(message_id=message_id, run_id=run_id)
        if claimed is None:
            return
        message, request = claimed
    finally:
        _release_db()
    _count(+1)
    try:
        future = asyncio.run_coroutine_threadsafe(_stream(message=message, run_id=run_id, request=request),
                                                  turn_loop())
        outcome = future.result()
    finally:
        _count(-1)
    try:
        if isinstance(outcome, Done):
            _complete(message=message, run_id=run_id, result=outcome.result)
        else:
            lifecycle.turn_fail(message=message, run_id=run_id, error=outcome[0], attempts=outcome[1])
    finally:
        _release_db()


def _complete(*, message: Message, run_id: uuid.UUID, result) -> None:
    """Store the turn's end; if the database cannot take it, keep it in the outbox (applied once it answers).
    Not retried inline: while the database is down a retry waits the pool's timeout with the answer only in this
    thread's memory, while the outbox makes it durable at once."""
    try:
        lifecycle.turn_complete(message=message, run_id=run_id, result=result)
    except (InterfaceError, OperationalError) as exc:
        _drop_connection()
        lifecycle.turn_complete_later(message=message, run_id=run_id, result=result)
        logger.warning("chat turn %s: the database is unavailable (%s); its end is kept in the outbox",
                       message.pk, exc)


async def _stream(*, message: Message, run_id: uuid.UUID, request):
    """Read the routing core's stream, publishing each delta. Returns the final `Done`, or (error, attempts)
    for a turn that failed before its first delta."""
    publisher = streams.StreamPublisher(message.pk)
    heartbeat = asyncio.create_task(_heartbeat(message.pk, run_id, publisher))
    try:
        async for event in route_stream(
            tenant=message.tenant, tier=message.tier, request=request, should_stop=publisher.stop_requested
        ):
            if isinstance(event, TextDelta):
                if event.text:
                    publisher.publish(event.text)
            elif isinstance(event, Done):
                await publisher.close()
                return _as_published(event, publisher)
        return ("The answer ended without a result. Please retry.", [])
    except AllEndpointsFailed as exc:
        return (str(exc), exc.attempts)
    except RoutingError as exc:
        return (str(exc), getattr(exc, "attempts", None))
    except Exception:
        logger.exception("chat turn %s crashed", message.pk)
        return ("Something went wrong while answering. Please retry.", None)
    finally:
        heartbeat.cancel()
        if not publisher._task.done():
            await publisher.close()


def _as_published(done: Done, publisher: streams.StreamPublisher) -> Done:
    """After a stop, the stored answer is exactly what was published (what the user saw); the tokens billed
    stay those the provider generated, including a delta refused because the stop flag was already set."""
    if not publisher.refused:
        return done
    result = dataclasses.replace(done.result, text=publisher.text, finish_reason=FINISH_CANCELLED)
    return Done(result)


async def _heartbeat(message_id: int, run_id: uuid.UUID, publisher: streams.StreamPublisher) -> None:
    """Keep the heartbeat alive; also notice a stop during a long pause between deltas.

    A Redis error does not end the heartbeat (a dead heartbeat would have the sweeper end a healthy turn): it
    tries again soon, so the key is back moments after Redis is (a restart loses it)."""
    client = streams.async_redis()
    key = streams.heartbeat_key(message_id)
    interval = settings.CHAT_HEARTBEAT_INTERVAL
    while True:
        try:
            await client.set(key, str(run_id), ex=settings.CHAT_HEARTBEAT_TTL)
            await publisher.stop_requested(poll=True)
            delay = interval
        except Exception as exc:  # noqa: BLE001 - Redis away (ConnectionError, timeout): keep trying
            logger.warning("chat turn %s: heartbeat not written (%s); retrying", message_id, exc)
            delay = min(interval, streams.REDIS_RETRY_SECONDS)
        await asyncio.sleep(delay)


def _drop_connection() -> None:
    """A connection that failed is not handed back for reuse."""
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may raise; it is gone either way
        pass


def _release_db() -> None:
    """Give this thread's connection back to the pool (Django's pool returns it on close)."""
    close_old_connections()
    if not connection.in_atomic_block:
        connection.close()


def _count(delta: int) -> None:
    global in_flight, peak_in_flight
    with _count_lock:
        in_flight += delta
        peak_in_flight = max(peak_in_flight, in_flight)


def wait_idle(timeout: float) -> bool:
    """For tests and the bench: wait until this process runs no turn."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if in_flight == 0:
            return True
        time.sleep(0.02)
    return False
