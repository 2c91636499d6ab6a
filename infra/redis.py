"""The process's Redis clients (redis-py, hiredis as its reply parser) and the Lua script runner.

- `redis_sync()`: one client per process, for sync code (services, Celery tasks, the admin, health).
- `redis_async()`: one client per event loop (redis.asyncio's connections cannot cross loops).

Each client owns one connection pool, bounded by REDIS_MAX_CONNECTIONS (a caller past it waits for a free
connection, up to REDIS_TIMEOUT), with REDIS_TIMEOUT for connecting and for each reply, so a burst of requests
reuses connections instead of opening one each. Replies are decoded to `str`. After a Redis restart the
clients reconnect on their own: a command that meets a dead connection is sent again on a new one (redis-py's
Retry, on ConnectionError only), and a connection idle longer than REDIS_HEALTH_CHECK_INTERVAL is PINGed first. A forked child builds its own
clients on first use. Every connection names itself `kiwiclaw:<pid>` (CLIENT LIST shows whose it is).

Never build a Redis client elsewhere: that is a new pool, and a TCP connect, per call.

A command cancelled in flight (its caller's task was cancelled, or timed out) closes its connection
(redis-py disconnects on any exception during a send or a read), so a late reply can never be read by the
next user of that connection; tests/infra/test_cancellation.py holds us to it.

`Script(source)`: a Lua script run by SHA (EVALSHA); when the server does not know it yet (restarted,
flushed), EVAL sends the source once, which also caches it there. `script.run(keys, args)` on the sync
client, `await script.arun(keys, args)` on the loop's async client, and `await arun_scripts(...)` for several
independent scripts in one round trip (a pipeline without MULTI).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence

import redis
import redis.asyncio as aredis
from django.conf import settings
from django.core.signals import setting_changed
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.retry import Retry

from .loops import PerLoop

_sync_client: redis.Redis | None = None
_sync_lock = threading.Lock()


# After a Redis restart every pooled connection is a dead socket. redis-py finds most of them at checkout (a
# socket the server closed reads EOF) and reconnects; a command already in flight when the server went away (a
# blocked XREAD, a script) fails with ConnectionError instead. The retry below sends such a command again on a
# new connection, with back-off across a short outage: waits of about 0.1, 0.2, 0.4, 0.8, 1 and 1 s (half of each
# jittered), so a restart of a second or two is bridged and a Redis that stays down fails a caller after 2-3.5 s.
# Only ConnectionError is retried: a TimeoutError may mean the server ran the command and the reply was slow.
# Nothing is added to a healthy command's path.
RETRIES = 6


def _retry(retry_class):
    return retry_class(EqualJitterBackoff(cap=1.0, base=0.05), RETRIES, supported_errors=(RedisConnectionError,))


def _options(retry_class) -> dict:
    return {
        "decode_responses": True,
        "max_connections": settings.REDIS_MAX_CONNECTIONS,
        "timeout": settings.REDIS_TIMEOUT,  # waiting for a free connection at the limit
        "socket_timeout": settings.REDIS_TIMEOUT,
        "socket_connect_timeout": settings.REDIS_TIMEOUT,
        "client_name": f"kiwiclaw:{os.getpid()}",
        "retry": _retry(retry_class),
        # A connection idle this long is PINGed before its next command (never a busy one: each reply moves
        # the check on), so a socket a restart or a firewall cut is found before a command is sent on it.
        "health_check_interval": settings.REDIS_HEALTH_CHECK_INTERVAL,
    }


def redis_sync() -> redis.Redis:
    """The process's sync client (thread-safe: its pool hands each thread its own connection)."""
    global _sync_client
    client = _sync_client
    if client is None:
        with _sync_lock:
            if _sync_client is None:
                pool = redis.BlockingConnectionPool.from_url(settings.REDIS_URL, **_options(Retry))
                _sync_client = redis.Redis(connection_pool=pool)
            client = _sync_client
    return client


def _new_async_client() -> aredis.Redis:
    pool = aredis.BlockingConnectionPool.from_url(settings.REDIS_URL, **_options(AsyncRetry))
    return aredis.Redis(connection_pool=pool)


_async_clients: PerLoop[aredis.Redis] = PerLoop(_new_async_client)


def redis_async() -> aredis.Redis:
    """The running event loop's client."""
    return _async_clients.get()


async def aclose_redis() -> None:
    """Close the running loop's client (before closing a loop you made, e.g. in a worker thread)."""
    client = _async_clients.pop()
    if client is not None:
        await client.aclose(close_connection_pool=True)


def _forget_sync_client() -> None:
    global _sync_client, _sync_lock
    _sync_client = None  # the parent's sockets are not ours to use
    _sync_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_sync_client)


def _on_setting_changed(*, setting: str, **kwargs) -> None:
    """A test that points REDIS_URL elsewhere (override_settings) gets clients for the new URL."""
    global _sync_client
    if setting.startswith("REDIS_"):
        client, _sync_client = _sync_client, None
        if client is not None:
            client.connection_pool.disconnect()
        _async_clients.forget_all()


setting_changed.connect(_on_setting_changed)


class Script:
    """A Lua script, registered once at import (`SCRIPT = Script("...")`) and run by SHA."""

    def __init__(self, source: str):
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def run(self, keys: Sequence = (), args: Sequence = (), *, client: redis.Redis | None = None):
        client = client or redis_sync()
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)

    async def arun(self, keys: Sequence = (), args: Sequence = (), *, client: aredis.Redis | None = None):
        client = client or redis_async()
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


async def arun_scripts(*calls: tuple[Script, Sequence, Sequence]) -> list:
    """Run independent scripts, `(script, keys, args)` each, in one round trip on the loop's async client (a
    pipeline, not a transaction: each is atomic, the group is not). Returns each one's reply, as `arun` would;
    a script the server does not know yet is run again on its own (EVALSHA did not run it), and any other
    error is raised after the replies are in. A single script runs as `arun` does, without a pipeline's
    bookkeeping."""
    if len(calls) == 1:
        script, keys, args = calls[0]
        return [await script.arun(keys, args)]
    pipe = redis_async().pipeline(transaction=False)
    for script, keys, args in calls:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    replies = await pipe.execute(raise_on_error=False)
    for i, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            script, keys, args = calls[i]
            replies[i] = await script.arun(keys, args)
        elif isinstance(reply, Exception):
            raise reply
    return replies
