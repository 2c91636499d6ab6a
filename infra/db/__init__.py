"""Postgres connections that survive the server going away: the pool's check, and the database backend.

Every process keeps connections that outlive any one request: the pool's idle ones, and those held by threads
that never see Django's request signals (asgiref's one thread for `sync_to_async` outside a request, which the
chat worker's turn loop and the /v1 handler use; Celery's pool threads; the catalog's reload thread). When
Postgres restarts, or a failover or `pg_terminate_backend` ends the backends, all of them are dead at once.
Three things make every process serve again on the next request, with nothing restarted:

- **The pool checks a connection before handing it out** (`check_connection`, given to psycopg_pool through
  `DATABASES["default"]["OPTIONS"]["pool"]["check"]`): psycopg_pool's own check, an empty query, one round trip
  per checkout. When it fails, the pool's other idle connections are checked at once too: they died with it,
  and left to the pool's loop each would cost a growing back-off (1 s, 2 s, 4 s ...) in front of a request.
- **A thread's connection that psycopg knows is broken is replaced** before the thread's next statement
  (`infra.db.base.DatabaseWrapper.ensure_connection`), instead of failing every statement after the first (Django
  leaves that to the request signals, which those threads never see). Outside a transaction only.
- **An idempotent read is retried once** on a new connection when the connection was lost under it
  (`infra.db.base`): a SELECT in autocommit, outside `transaction.atomic`, not a server-side cursor. So the
  first query a long-lived thread runs after the drop succeeds instead of failing the turn or the request.
  Writes are never retried here: whether a lost write committed is not known (the ledger's idempotency keys
  and the outbox deal with those).

All three cost nothing while the database is healthy except the check's round trip at checkout.
`DB_POOL_RECONNECT_TIMEOUT` bounds psycopg_pool's reconnection back-off (see kiwiclaw/settings.py), so a pool
that failed to reconnect while Postgres was down tries again as soon as a request needs a connection.

Set `ENGINE` to "infra.db" (kiwiclaw/settings.py does); it is Django's PostgreSQL backend otherwise.
"""

from __future__ import annotations

import logging

from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)


def check_connection(conn) -> None:
    """The pool's check before a checkout (psycopg_pool's own); on failure, check the other idle ones now."""
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        pool = getattr(conn, "_pool", None)  # set by psycopg_pool while it checks a connection it hands out
        if pool is not None:
            logger.warning("a pooled Postgres connection was dead; checking the pool's other idle connections")
            pool.check()
        raise
