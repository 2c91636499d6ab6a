"""A real database outage for one test: the test database refuses connections and loses the ones it had.

    with database_unavailable(keep=connection):
        ...  # every other connection to the test database is gone, and no new one is accepted

`ALTER DATABASE ... ALLOW_CONNECTIONS false` plus `pg_terminate_backend` on the test database's backends: what
a process sees while Postgres restarts (its connections die with "terminating connection due to administrator
command", and connecting fails), on this test's own database only, so the machine's Postgres and everyone else's
databases are untouched. `keep` spares one connection (the test's own), so the test can read while the others
cannot. Nothing is mocked: the processes under test meet the fault through their real drivers and pools.
"""

from __future__ import annotations

import contextlib

import psycopg
from psycopg import sql


def _admin(settings_dict: dict) -> psycopg.Connection:
    return psycopg.connect(
        host=settings_dict.get("HOST") or "127.0.0.1", port=settings_dict.get("PORT") or 5432,
        user=settings_dict.get("USER") or "postgres", password=settings_dict.get("PASSWORD") or None,
        dbname="postgres", autocommit=True,
    )


@contextlib.contextmanager
def database_unavailable(*, keep=None):
    """The test database refuses connections while the block runs; `keep` (a Django connection) survives."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    assert name.startswith("test"), f"refusing to take down {name!r}: not a test database"
    spared = 0
    if keep is not None:
        keep.ensure_connection()
        spared = keep.connection.info.backend_pid
    with _admin(connection.settings_dict) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid() AND pid <> %s", [name, spared])
            yield
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(name)))
            _renew_pool(connection)


def _renew_pool(connection) -> None:
    """This process's pooled connections died with the outage (only the one in hand was spared): start its pool
    afresh, so the test's own later queries and its teardown do not draw a dead one."""
    connection.close()
    close = getattr(connection, "close_pool", None)
    if close is not None:
        close()
