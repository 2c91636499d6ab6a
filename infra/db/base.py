"""Django's PostgreSQL backend, with broken connections replaced and lost reads retried once (see infra.db)."""

from __future__ import annotations

import logging

from django.db.backends.postgresql import base as postgresql
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.utils import InterfaceError, OperationalError

logger = logging.getLogger("infra.db")


class DatabaseWrapper(postgresql.DatabaseWrapper):
    def ensure_connection(self):
        """A connection psycopg has seen break is given back (the pool discards it) and another taken, when no
        transaction depends on it. Otherwise Django would fail every later statement of this thread with
        "the connection is closed" until a request signal closed it: in threads that never see one, forever."""
        conn = self.connection
        if conn is not None and conn.closed and not self.in_atomic_block:
            self.discard_connection()
        super().ensure_connection()

    def discard_connection(self) -> None:
        """Give up this thread's connection (the pool replaces a broken one). Outside a transaction only."""
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped either way
            self.connection = None

    def make_cursor(self, cursor):
        return RetryingCursorWrapper(cursor, self)

    def make_debug_cursor(self, cursor):
        return RetryingCursorDebugWrapper(cursor, self)


class _RetryLostRead:
    """Runs a read again, once, on a new connection when the connection was lost under it."""

    def _execute(self, sql, params, *ignored_wrapper_args):
        try:
            return super()._execute(sql, params, *ignored_wrapper_args)
        except (OperationalError, InterfaceError) as exc:
            if not self._may_retry(sql):
                raise
            logger.warning("Postgres connection lost (%s); reading again on a new connection", exc)
        self.db.discard_connection()
        self.db.ensure_connection()
        with self.db.wrap_database_errors:
            self.cursor = self.db.create_cursor()
        return super()._execute(sql, params, *ignored_wrapper_args)

    def _may_retry(self, sql) -> bool:
        db = self.db
        conn = db.connection
        return (
            isinstance(sql, str)
            and sql.lstrip()[:6].upper() == "SELECT"
            and not db.in_atomic_block
            and db.autocommit
            and (conn is None or conn.closed)  # the connection was lost, not the query refused
            and getattr(self.cursor, "name", None) is None  # a server-side cursor's rows lived on that connection
        )


class RetryingCursorWrapper(_RetryLostRead, CursorWrapper):
    pass


class RetryingCursorDebugWrapper(_RetryLostRead, CursorDebugWrapper):
    pass
