"""The Redis side of a turn: the token stream, the stop flag and the heartbeat of each assistant message.

- `kc:stream:msg:<id>`: a Redis Stream. Each text delta is one entry `{t: "d", v: text}`; the turn ends with one
  `{t: "end", s: status}` entry, written after the final state is committed to the database. The stream is
  never trimmed (an SSE client may replay the whole answer); it expires `CHAT_STREAM_TTL` seconds after the end
  marker, and `CHAT_STREAM_MAX_AGE` after its first delta as a backstop for a turn nobody ended.
- `kc:cancel:msg:<id>`: the stop flag. Deltas are appended by a Lua script that refuses once the flag exists,
  so no delta reaches the stream after the stop was set, whatever the timing.
- `kc:hb:msg:<id>`: the heartbeat, holding the run id, refreshed while a turn runs; the sweeper treats a missing
  key as a dead worker — unless Redis itself restarted less than a heartbeat TTL ago (`redis_started_at`): a
  restart loses every key, and running turns need a moment to write theirs again.

Redis is a cache of a turn's progress, never its truth: a write here that fails (Redis restarting) is retried or
dropped, never allowed to end an answer. The publisher keeps unwritten text pending and retries; the reader falls
back to the database for the final state.
"""

import asyncio
import logging
import re
import time
import weakref

from django.conf import settings

from infra.redis import Script, redis_async, redis_sync

logger = logging.getLogger(__name__)

# How soon a write refused because Redis is away is tried again (the publisher, the heartbeat).
REDIS_RETRY_SECONDS = 0.5

ENTRY_DELTA = "d"
ENTRY_END = "end"
STREAM_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")

_PUBLISH = Script("""
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('XADD', KEYS[1], '*', 't', 'd', 'v', ARGV[1])
if redis.call('XLEN', KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
""")


def stream_key(message_id) -> str:
    return f"kc:stream:msg:{message_id}"


def cancel_key(message_id) -> str:
    return f"kc:cancel:msg:{message_id}"


def heartbeat_key(message_id) -> str:
    return f"kc:hb:msg:{message_id}"


def _chat_setting(name: str):
    return getattr(settings, name)


# --- the clients: infra's (one per process for sync code, one per event loop for the turn loop and SSE) ---

sync_redis = redis_sync
async_redis = redis_async


def stop_flag_set(message_id) -> None:
    sync_redis().set(cancel_key(message_id), "1", ex=_chat_setting("CHAT_STREAM_MAX_AGE"))


def stream_end(message_id, status: str) -> None:
    """Mark the stream finished (after the final state is committed) and let it expire."""
    client = sync_redis()
    pipe = client.pipeline(transaction=True)
    pipe.xadd(stream_key(message_id), {"t": ENTRY_END, "s": status})
    pipe.expire(stream_key(message_id), _chat_setting("CHAT_STREAM_TTL"))
    pipe.delete(heartbeat_key(message_id))
    pipe.expire(cancel_key(message_id), _chat_setting("CHAT_STREAM_TTL"))
    pipe.execute()


def stream_text(message_id) -> tuple[str, int]:
    """The text published so far and the number of delta entries (for the sweeper's partial answer)."""
    entries = sync_redis().xrange(stream_key(message_id))
    parts = [fields.get("v", "") for _id, fields in entries if fields.get("t") == ENTRY_DELTA]
    return "".join(parts), len(parts)


def heartbeat_alive(message_id) -> bool:
    return bool(sync_redis().exists(heartbeat_key(message_id)))


def redis_started_at() -> float:
    """When the Redis server last started (epoch seconds, from its own clock and uptime): keys written before
    then are gone, and tasks queued before then were lost with the broker's lists."""
    info = sync_redis().info("server")
    return time.time() - float(info["uptime_in_seconds"])


class StreamPublisher:
    """Publishes one turn's deltas from a background task, so reading the provider never waits on Redis.

    A delta after a quiet spell (the first one above all) is written at once. After a write, the writer pauses
    `CHAT_STREAM_FLUSH_INTERVAL` (or until `close()`), and what arrived meanwhile is joined into the next entry:
    at most one entry per interval per turn. A Redis round trip per token was most of a busy worker's CPU
    (bench/chat_latency.py, part 2), and a few updates a second look as smooth to a reader. `stopped` turns true once the stop flag refused a write; what was pending then
    is dropped, so no text reaches the stream after the stop was set.
    """

    def __init__(self, message_id):
        self.message_id = message_id
        self.stopped = False
        self.published = 0
        self.refused = 0
        self._parts: list[str] = []
        self._pending: list[str] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._closed = asyncio.Event()  # cuts the pause between writes short at the end of the turn
        self._interval = _chat_setting("CHAT_STREAM_FLUSH_INTERVAL")
        self.client = async_redis()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def publish(self, text: str) -> None:
        if self.stopped:
            self.refused += 1
            return
        self._pending.append(text)
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending and not self.stopped:
                parts = list(self._pending)
                batch, count = "".join(parts), len(parts)
                self._pending.clear()
                try:
                    ok = await _PUBLISH.arun(
                        keys=[stream_key(self.message_id), cancel_key(self.message_id)],
                        args=[batch, _chat_setting("CHAT_STREAM_MAX_AGE")], client=self.client,
                    )
                except Exception as exc:  # noqa: BLE001 - Redis away: the answer goes on; its text is kept
                    if self._closing:
                        # The turn has ended: its full text is in the database's final state, which readers
                        # fall back to; waiting here for Redis would hold the turn's end.
                        logger.warning("chat turn %s: stream write failed at the end (%s); the final state "
                                       "carries the text", self.message_id, exc)
                        return
                    logger.warning("chat turn %s: stream write failed (%s); retrying", self.message_id, exc)
                    self._pending[:0] = parts
                    await asyncio.sleep(REDIS_RETRY_SECONDS)
                    continue
                if ok:
                    self.published += count
                    self._parts.append(batch)
                else:
                    self.stopped = True
                    self.refused += count + len(self._pending)
                    self._pending.clear()
                if self._interval > 0 and not self._closing:
                    try:
                        await asyncio.wait_for(self._closed.wait(), self._interval)
                    except TimeoutError:
                        pass
            if self._closing:
                return

    async def close(self) -> None:
        """Flush what is pending and stop the background task."""
        self._closing = True
        self._closed.set()
        self._wakeup.set()
        await self._task

    @property
    def text(self) -> str:
        return "".join(self._parts)

    async def stop_requested(self, poll: bool = False) -> bool:
        """The routing core's `should_stop`, checked between deltas. Free by default: every write checks the
        flag. The heartbeat polls Redis too, for stops during a long pause."""
        if poll and not self.stopped and await self.client.exists(cancel_key(self.message_id)):
            self.stopped = True
        return self.stopped


def _entry_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Subscription:
    """One SSE stream's place in the hub: its key, the last entry it was given, and the batches to read."""

    def __init__(self, key: str, cursor: str):
        self.key = key
        self.cursor = cursor
        self.batches: asyncio.Queue = asyncio.Queue()


class StreamHub:
    """One Redis reader for every SSE stream a web process serves (one hub per event loop).

    Read on its own, each open stream costs an XREAD per entry: 50 answers at 20 entries a second each were a
    thousand round trips a second, most of a web process's CPU after the answers themselves. The hub reads all
    subscribed streams in one XREAD and hands each stream its entries. After a read that brought entries it
    waits `CHAT_SSE_HUB_WINDOW` seconds, so that the next read gathers what all streams wrote meanwhile; its
    BLOCK is short (`CHAT_SSE_HUB_BLOCK_MS`) so that a stream that joins is read soon even when the others are
    quiet. A stream's first entries are read by the stream itself, so the first words never wait for the hub.
    A Redis error is handed to every subscriber (their SSE responses end; browsers reconnect with
    Last-Event-ID and lose nothing).
    """

    def __init__(self):
        self._subs: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task | None = None

    def subscribe(self, key: str, cursor: str) -> Subscription:
        sub = Subscription(key, cursor)
        self._subs.setdefault(key, set()).add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.key]

    async def _run(self) -> None:
        client = async_redis()
        while self._subs:
            cursors = {key: min((s.cursor for s in subs), key=_entry_id) for key, subs in self._subs.items()}
            try:
                reply = await client.xread(cursors, count=1000, block=_chat_setting("CHAT_SSE_HUB_BLOCK_MS"))
            except Exception as exc:  # noqa: BLE001 - every reader hears of it, then the hub starts over
                for subs in self._subs.values():
                    for sub in subs:
                        sub.batches.put_nowait(exc)
                self._subs.clear()
                return
            for key, entries in reply or ():
                for sub in tuple(self._subs.get(key, ())):
                    after = _entry_id(sub.cursor)
                    fresh = [entry for entry in entries if _entry_id(entry[0]) > after]
                    if fresh:
                        sub.cursor = fresh[-1][0]
                        sub.batches.put_nowait(fresh)
            if reply:
                await asyncio.sleep(_chat_setting("CHAT_SSE_HUB_WINDOW"))


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StreamHub]" = weakref.WeakKeyDictionary()


def stream_hub() -> StreamHub:
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = StreamHub()
    return hub


def rescue_claim(message_id, period: int) -> bool:
    """At most one re-enqueue of a waiting turn per period (the sweeper runs every ~30 s)."""
    return bool(sync_redis().set(f"kc:hb:rescue:msg:{message_id}", "1", nx=True, ex=period))
