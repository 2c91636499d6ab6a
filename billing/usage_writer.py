"""Usage rows written from an event loop (the proxy's calls), on the loop's own Postgres connection.

`arecord(row)` is `billing.services.usage_record(**row)` for async code: the same checks and the same statement
(`usage_insert`, `INSERT_USAGE`: the mapping is written once), executed on `infra.db.aio`'s pool instead of
Django's sync connection, whose thread hop per row cost the proxy more than the write itself
(bench/README.md, "Proxy API"). The row's budget hold is settled once it is committed, as `usage_record` does.

Rows of calls that end close together go to the database together: one transaction (one commit, one WAL
flush) and one settle round trip for all of them. An idle writer waits `BILLING_USAGE_LINGER_MS` (2 ms) for
company before it writes (group commit); after that, rows arriving while a write is in flight go in the next.
The client has its answer before any of this (the row comes after the last byte); the linger shares commits,
which cost the database and this process more than the rows themselves, and at one client at a time it moves
the write out of the way of the next request (bench/README.md, "Proxy API"). A lone row goes in autocommit.

A batch is all or nothing inside its transaction. If anything in it fails, nothing of it was written (the
transaction rolled back, and its settles, which run after the commit, never ran), and each of its rows is
written again on its own: a row that cannot be written then fails alone, with the error a lone write would
have raised (Django's classes: `django.db.OperationalError` when the database is unavailable, which the caller
answers by keeping the row in the outbox). Writing a row twice is harmless anyway: the usage key is unique.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings
from django.core.exceptions import ValidationError

from infra.db.aio import apool, django_errors
from infra.loops import PerLoop

from .budget import abudget_settle
from .models import UsageRecord
from .services import INSERT_USAGE, UsageInsert, usage_existing, usage_insert, usage_inserted

logger = logging.getLogger("billing")


async def arecord(row: dict) -> UsageRecord:
    """Append one usage row (`usage_insert`'s keyword arguments) from an event loop; idempotent on its key.
    Returns the UsageRecord (the first one, for a repeated key), or raises what `usage_record` would."""
    return await _writers.get().record(row)


class UsageWriter:
    """One per event loop: gathers the rows that arrive while a write is in flight into the next one."""

    def __init__(self):
        self._pending: list[tuple[dict, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def record(self, row: dict) -> UsageRecord:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((row, future))
        if self._writer is None:
            self._writer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[dict, asyncio.Future]] = []
        try:
            if (linger := settings.BILLING_USAGE_LINGER_MS) > 0:
                await asyncio.sleep(linger / 1000)
            while self._pending:
                batch, self._pending = self._pending, []
                outcomes = await awrite_many([row for row, _ in batch])
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        except asyncio.CancelledError:  # the loop is going away: so are the calls waiting here
            for _, future in batch + self._pending:
                future.cancel()
            self._pending = []
            raise
        finally:
            self._writer = None


_writers: PerLoop[UsageWriter] = PerLoop(UsageWriter)


async def awrite_many(rows: list[dict]) -> list:
    """Write `rows` (`usage_insert`'s keyword arguments each): together in one transaction, or, if that fails,
    each on its own. Returns, per row, its UsageRecord or the exception that stopped it; raises nothing else."""
    outcomes: list = [None] * len(rows)
    checked: list[tuple[int, UsageInsert]] = []
    for i, row in enumerate(rows):
        try:
            checked.append((i, usage_insert(**row)))
        except (ValidationError, TypeError) as exc:  # bad input fails alone, before any statement
            outcomes[i] = exc
    inserted: dict[int, UsageRecord | None] = {}
    if len(checked) > 1:
        try:
            inserted = dict(zip((i for i, _ in checked), await _insert([c for _, c in checked]), strict=True))
        except Exception:  # noqa: BLE001 - nothing of the batch was written: each row again, on its own
            logger.info("a batch of %d usage rows failed; writing them one by one", len(checked), exc_info=True)
    for i, insert in checked:
        if i in inserted:
            continue
        try:
            inserted[i] = (await _insert([insert]))[0]
        except Exception as exc:  # noqa: BLE001 - the row's own caller decides
            outcomes[i] = exc
    new = [record for record in inserted.values() if record is not None]
    if new:
        await abudget_settle(new)
    for i, insert in checked:
        if i not in inserted:
            continue
        if inserted[i] is not None:
            outcomes[i] = inserted[i]
            continue
        try:  # a repeat: the row already in the ledger (rare, so Django's ORM and its thread hop)
            outcomes[i] = usage_existing(insert.record, await UsageRecord.objects.aget(key=insert.record.key))
        except Exception as exc:  # noqa: BLE001 - the row's own caller decides
            outcomes[i] = exc
    return outcomes


async def _insert(inserts: list[UsageInsert]) -> list[UsageRecord | None]:
    """Execute INSERT_USAGE for each, in one transaction when there are several (autocommit for one). Per row,
    its record with id and time, or None where the key was in the ledger already."""
    with django_errors():
        async with (await apool()).connection() as conn:
            if len(inserts) == 1:
                returned = [await (await conn.execute(INSERT_USAGE, inserts[0].params)).fetchone()]
            else:
                async with conn.transaction():
                    cursor = conn.cursor()
                    await cursor.executemany(INSERT_USAGE, [insert.params for insert in inserts], returning=True)
                    returned = []
                    while True:
                        returned.append(await cursor.fetchone())
                        if not cursor.nextset():
                            break
    return [usage_inserted(insert.record, row) if row is not None else None
            for insert, row in zip(inserts, returned, strict=True)]
