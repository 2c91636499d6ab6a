"""The outbox: what an answer's end must write, kept durably while Postgres cannot take it, then applied once.

An answer's bookkeeping — a proxied call's usage row, a chat turn's final state with its usage row — is written
to Postgres directly, as always. When that write fails (the database is down, restarting, or the pooled
connection died with it), the caller `put`s the complete record here instead, keyed by the call's idempotency
key (`api:<request id>`, `chat:<message id>`), and `drain` applies it once the database answers again.

Where an entry is kept, and why both places:

- **A spool file on local disk** (`OUTBOX_SPOOL_DIR/<database name>/<key>.json`, written to a temporary file,
  fsynced, renamed into place): survives a Redis restart (this deployment's Redis may keep nothing on disk) and
  a crash of the process that wrote it, and needs nothing but the disk that is already there. Any process on
  the host may replay any file; one directory per database, because one host may serve several databases.
- **A Redis hash** (`kc:outbox`, field = key, value = the entry): visible to every host, so a worker anywhere
  drains an entry whose writer died for good, the sweeper can ask whether a turn's completion is waiting
  (`pending`), and `depth` counts the fleet's backlog. Best effort: when Redis is down too the spool alone holds
  the entry.

A hash keyed by the idempotency key rather than a stream with a consumer group: entries are independent (no
order to keep), the key is what the sweeper asks about, a second `put` of the same key replaces the first instead
of queueing a duplicate, and concurrent drainers need no claiming protocol because applying is idempotent.

**Exactly once.** An entry may be applied more than once (by the writer's own replayer, by the beat task, from
both places), so every handler must be idempotent on the entry's key: the ledger's unique key (`usage_record`
is INSERT ... ON CONFLICT DO NOTHING) and, for a chat turn, the message's run check. A handler that meets the
database down raises a database error: the entry stays and the drain stops until the next pass. An entry that
can never apply (bad data, its tenant gone) is moved to `<spool>/dead/` and out of the hash, logged at ERROR
with its content.

Handlers are registered by the layers that own the records (`register(kind, handler)`): billing knows nothing
of routing or chat. `routing.metering` registers `usage`, `conversations.lifecycle` registers `chat_turn`.

**Who drains.** The process that `put` an entry starts a replayer thread that drains every
`OUTBOX_RETRY_INTERVAL` seconds until its spool is empty (the database is usually back within seconds, and a
web process has no beat); the beat task `billing.drain_outbox` drains every `OUTBOX_DRAIN_INTERVAL` seconds on
a worker (entries of processes that died); the chat sweeper drains before it judges turns.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection

from infra.redis import redis_sync

logger = logging.getLogger(__name__)

HASH_KEY = "kc:outbox"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")

# Errors that mean "the database cannot take it now": keep the entry, try again later.
DB_UNAVAILABLE = (OperationalError, InterfaceError)
# Errors that mean "this entry can never apply".
_DEAD = (ValidationError, ObjectDoesNotExist, IntegrityError, KeyError, TypeError, ValueError)

_handlers: dict[str, Callable[[dict], object]] = {}
_write_lock = threading.Lock()
_replayer: threading.Thread | None = None
_replayer_lock = threading.Lock()


def register(kind: str, handler: Callable[[dict], object]) -> None:
    """Name the function that applies entries of `kind`. It takes the entry's payload, must be idempotent on
    the entry's key, and raises a database error (OperationalError/InterfaceError) when the database is down."""
    _handlers[kind] = handler


# --- where entries live -------------------------------------------------------------------------------------

def spool_dir() -> Path:
    """This database's spool directory (created on demand)."""
    base = Path(getattr(settings, "OUTBOX_SPOOL_DIR", None) or Path(settings.BASE_DIR) / "var" / "outbox")
    name = connection.settings_dict.get("NAME") or "default"
    return base / _SAFE.sub("_", str(name))


def _file_name(key: str) -> str:
    return _SAFE.sub("_", key) + ".json"


def _write_spool(key: str, data: str) -> Path:
    directory = spool_dir()
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / _file_name(key)
    tmp = directory / f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a crash
    finally:
        os.close(dir_fd)
    return final


def _spool_files() -> list[Path]:
    directory = spool_dir()
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
    except FileNotFoundError:
        return []


# --- put ------------------------------------------------------------------------------------------------------

def put(*, kind: str, key: str, payload: dict) -> None:
    """Keep an entry durably until `drain` applies it: the local spool first (fsynced: when this returns the
    entry survives a crash of this process and a Redis restart), then the shared Redis hash (best effort).
    `payload` must be JSON-serializable (money as strings). Raises OSError only when the spool cannot be
    written and Redis refused too: then nothing holds the entry and the caller must say so."""
    if kind not in _handlers:
        raise ValueError(f"No outbox handler is registered for {kind!r}.")
    data = json.dumps({"kind": kind, "key": key, "payload": payload, "put_at": time.time()}, separators=(",", ":"))
    spooled = None
    try:
        with _write_lock:
            _write_spool(key, data)
        spooled = True
    except OSError as exc:
        spooled = exc
        logger.error("outbox: spool write of %s failed (%s); keeping it in Redis only", key, exc)
    try:
        redis_sync().hset(HASH_KEY, key, data)
    except (redis.RedisError, OSError):
        if spooled is not True:
            raise spooled from None
        logger.warning("outbox: Redis unavailable; %s kept in the local spool only", key)
    logger.warning("outbox: %s kept for later (%s); it will be applied when the database answers", key, kind)
    _start_replayer()


# --- drain ------------------------------------------------------------------------------------------------------

def _redis_entries() -> dict[str, str] | None:
    try:
        return redis_sync().hgetall(HASH_KEY)
    except (redis.RedisError, OSError):
        return None


def _forget(key: str, path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(redis.RedisError, OSError):
        redis_sync().hdel(HASH_KEY, key)


def _bury(key: str, data: str, path: Path | None, exc: Exception) -> None:
    logger.error("outbox: entry %s can never be applied (%s: %s); moved aside: %s", key, type(exc).__name__, exc,
                 data)
    dead = spool_dir() / "dead"
    dead.mkdir(parents=True, exist_ok=True)
    (dead / _file_name(key)).write_text(data, encoding="utf-8")
    _forget(key, path)


def _apply(data: str) -> None:
    entry = json.loads(data)
    handler = _handlers.get(entry["kind"])
    if handler is None:
        raise LookupError(entry["kind"])
    handler(entry["payload"])


def drain(*, limit: int = 1000) -> dict:
    """Apply waiting entries (Redis hash and this host's spool), each once; returns counts
    {"applied", "waiting", "dead"}. Stops at the first database error (the database is down: try later).
    Safe to run concurrently anywhere: handlers are idempotent, and a spool file being applied by another
    process on this host is skipped (flock)."""
    counts = {"applied": 0, "waiting": 0, "dead": 0}
    shared = _redis_entries() or {}
    local = {}
    for path in _spool_files():
        local[path] = None
    items: list[tuple[str, str | None, Path | None]] = []  # (key, data from Redis, spool file)
    by_name = {path.name: path for path in local}
    for key, data in shared.items():
        items.append((key, data, by_name.pop(_file_name(key), None)))
    items.extend((None, None, path) for path in by_name.values())
    database_down = False
    for key, data, path in items[:limit]:
        if database_down:
            counts["waiting"] += 1
            continue
        lock = None
        try:
            if path is not None:
                try:
                    lock = open(path, encoding="utf-8")  # noqa: SIM115 - held across the apply
                except FileNotFoundError:  # applied meanwhile by another process on this host
                    path = None
                else:
                    try:
                        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        counts["waiting"] += 1
                        continue
                    if not path.exists():
                        continue
                    data = lock.read() if data is None else data
            if data is None:
                continue
            key = key or json.loads(data)["key"]
            try:
                _apply(data)
            except DB_UNAVAILABLE:
                database_down = True
                counts["waiting"] += 1
                _drop_broken_connection()
                continue
            except LookupError:  # no handler in this process: another process kind will apply it
                counts["waiting"] += 1
                continue
            except (*_DEAD, json.JSONDecodeError) as exc:
                _bury(key, data, path, exc)
                counts["dead"] += 1
                continue
            _forget(key, path)
            counts["applied"] += 1
        finally:
            if lock is not None:
                lock.close()
    counts["waiting"] += max(0, len(items) - limit)
    _release_connection()
    if counts["applied"] or counts["dead"]:
        logger.info("outbox: applied %(applied)s, %(waiting)s waiting, %(dead)s moved aside", counts)
    return counts


def _drop_broken_connection() -> None:
    if not connection.in_atomic_block:
        with contextlib.suppress(DatabaseError):
            connection.close()


def _release_connection() -> None:
    """A drain runs on worker and replayer threads outside any request: hand the connection back to the pool."""
    if not connection.in_atomic_block:
        with contextlib.suppress(DatabaseError):
            connection.close()


# --- what is waiting --------------------------------------------------------------------------------------------

def pending(key: str) -> bool:
    """Is an entry for `key` waiting (in Redis, or in this host's spool)?"""
    if (spool_dir() / _file_name(key)).exists():
        return True
    try:
        return bool(redis_sync().hexists(HASH_KEY, key))
    except (redis.RedisError, OSError):
        return False


def depth() -> int:
    """How many entries wait to be applied: those in the shared Redis hash and those in this host's spool that
    Redis does not hold (counted once each). For a gauge."""
    names = {path.name for path in _spool_files()}
    try:
        keys = redis_sync().hkeys(HASH_KEY)
    except (redis.RedisError, OSError):
        return len(names)
    return len(names | {_file_name(key) for key in keys})


# --- the writer's own replayer ----------------------------------------------------------------------------------

def _start_replayer() -> None:
    global _replayer
    with _replayer_lock:
        if _replayer is not None and _replayer.is_alive():
            return
        _replayer = threading.Thread(target=_replay_until_empty, name="outbox-replayer", daemon=True)
        _replayer.start()


def _replay_until_empty() -> None:
    global _replayer
    interval = float(getattr(settings, "OUTBOX_RETRY_INTERVAL", 1.0))
    while True:
        time.sleep(interval)
        try:
            drain()
        except Exception:  # noqa: BLE001 - the thread must outlive any one bad pass
            logger.exception("outbox: replay pass failed")
        # Decided under the lock `put` takes to start a replayer: an entry spooled after this check finds no
        # replayer running and starts one.
        with _replayer_lock:
            if not _spool_files():
                _replayer = None
                return


os.register_at_fork(after_in_child=lambda: globals().update(_replayer=None))
