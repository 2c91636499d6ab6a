"""One async Postgres connection pool per event loop, for writes made on a loop's hot path.

Django's connections are sync: from an event loop every query is a hop to a thread, and on the proxy's path
that hop cost more than the write it carried (bench/README.md, "Proxy API"). The few writes made from a loop
(the proxy's usage rows, billing/usage_writer.py) take a connection from this pool instead; everything else
goes through Django's ORM.

The same database, user and options as Django's `default` connection (`get_connection_params`, so a test run
reaches the test database), in autocommit, with psycopg's prepared statements on (Django turns them off). The
pool is psycopg_pool's `AsyncConnectionPool`, opened on first use by its loop: a connection given back broken
(the server restarted or ended it) is discarded and replaced by the pool, so the next write gets a live one.
Nothing is checked at checkout (a round trip per write): a write on a connection that died idle fails once,
and its caller keeps the row elsewhere (billing's outbox).

`django_errors()` raises psycopg's exceptions as Django's classes of the same name, so a caller catches
`django.db.OperationalError` whichever connection the statement ran on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings
from django.db import connections
from django.db import utils as django_db
from psycopg_pool import AsyncConnectionPool

from infra.loops import PerLoop

# Each loop's writes are serialized by their writer (billing/usage_writer.py); a second connection lets a
# batch start while a connection being replaced is still connecting.
MAX_CONNECTIONS = 2

# Most specific first: psycopg's classes mirror DB-API's hierarchy, and so do Django's.
_DJANGO_ERRORS = [(getattr(psycopg, name), getattr(django_db, name)) for name in (
    "DataError", "OperationalError", "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError",
    "InterfaceError", "DatabaseError", "Error")]


def _connect_kwargs() -> dict:
    params = connections["default"].get_connection_params()
    for name in ("cursor_factory", "context", "prepare_threshold"):  # Django's own cursor, adapters, no prepare
        params.pop(name, None)
    return {**params, "autocommit": True}


def _new_pool() -> AsyncConnectionPool:
    pool_options = settings.DATABASES["default"].get("OPTIONS", {}).get("pool", {})
    return AsyncConnectionPool(
        kwargs=_connect_kwargs(), min_size=1, max_size=MAX_CONNECTIONS, open=False,
        timeout=pool_options.get("timeout", 10.0), reconnect_timeout=pool_options.get("reconnect_timeout", 2.0),
        name="kiwiclaw-async",
    )


_pools: PerLoop[AsyncConnectionPool] = PerLoop(_new_pool)


async def apool() -> AsyncConnectionPool:
    """The running loop's pool, opened on its first use (without waiting for its first connection)."""
    pool = _pools.get()
    if pool.closed:
        await pool.open()
    return pool


async def aclose_pool() -> None:
    """Close the running loop's pool (before closing a loop you made)."""
    pool = _pools.pop()
    if pool is not None:
        await pool.close()


@contextmanager
def django_errors() -> Iterator[None]:
    """psycopg's exceptions, raised as Django's (`django.db.OperationalError` for `psycopg.OperationalError`,
    psycopg_pool's PoolTimeout included)."""
    try:
        yield
    except psycopg.Error as exc:
        for theirs, ours in _DJANGO_ERRORS:
            if isinstance(exc, theirs):
                raise ours(*exc.args) from exc
        raise
