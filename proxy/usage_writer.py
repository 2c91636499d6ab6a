"""The proxy's usage rows, written together when calls end together.

Each call awaits its own row (`record`), as before; underneath, the rows of calls that end while a write is in
flight wait for it and then go to the database together: one thread hop and one transaction (one commit, one
WAL flush) for all of them, instead of one each. With one call at a time nothing changes (a batch of one).

A batch is all or nothing inside its transaction. If anything in it fails, nothing of it was written (the
transaction rolled back, and its budget settles, which run on commit, never ran), and each of its rows is
written again on its own: a row that cannot be written then fails alone, with the same error a lone write
would have raised (the caller sends a database error's row to the outbox). Writing a row twice is harmless
anyway: `routing.metering.record` is idempotent on the usage key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.db import transaction

from infra.loops import PerLoop

logger = logging.getLogger("proxy")


class UsageWriter:
    """One per event loop: `record(**row)` resolves to what `write_one(**row)` returns, or raises what it raised."""

    def __init__(self, write_one: Callable[..., Decimal]):
        self._write_one = write_one
        self._write_many = sync_to_async(self._write_many_sync, thread_sensitive=False)
        self._pending: list[tuple[dict, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def record(self, **row) -> Decimal:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((row, future))
        if self._writer is None:
            self._writer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    outcomes = await self._write_many([row for row, _ in batch])
                except asyncio.CancelledError:  # the loop is going away: so are the calls waiting here
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as exc:  # noqa: BLE001 - every waiting call hears of it
                    outcomes = [exc] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._writer = None

    def _write_many_sync(self, rows: list[dict]) -> list:
        if len(rows) > 1:
            try:
                with transaction.atomic():
                    return [self._write_one(**row) for row in rows]
            except Exception:  # noqa: BLE001 - nothing of the batch was written: each row again, on its own
                logger.info("a batch of %d usage rows failed; writing them one by one", len(rows), exc_info=True)
        outcomes = []
        for row in rows:
            try:
                outcomes.append(self._write_one(**row))
            except Exception as exc:  # noqa: BLE001 - the row's own caller decides
                outcomes.append(exc)
        return outcomes


def per_loop(write_one: Callable[..., Decimal]) -> PerLoop[UsageWriter]:
    return PerLoop(lambda: UsageWriter(write_one))
