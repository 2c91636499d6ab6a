"""proxy/usage_writer.py: the usage rows of calls that end together go to the database in one transaction, each
call still gets its own row's billed amount (or its own error), and a batch that fails is written again row by
row, so one bad row costs the others nothing. Real Postgres; the rows go through routing.metering.record."""

import asyncio
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from billing.models import UsageRecord
from proxy.usage_writer import UsageWriter
from routing import metering
from routing.types import Prices, RouteResult, Usage

pytestmark = pytest.mark.django_db(transaction=True)

PRICES = Prices(input=Decimal("0.6"), output=Decimal("3"), cache_write=Decimal("0.6"), cache_read=Decimal("0.1"))
# 5 input tokens at $0.60 and 12 output tokens at $3.00 per million: (3 + 36) / 1,000,000
COST = Decimal("0.000039")


def _result() -> RouteResult:
    return RouteResult(text="kiwis", finish_reason="stop", tier="auto", endpoint="kimi-k2.5", provider="moonshot",
                       upstream_model="kimi-k2.5", usage=Usage(input_tokens=5, output_tokens=12), cost=COST,
                       prices=PRICES, requested_tier="auto")


class Spy:
    """write_one for the writer: records each row's key and whether it ran inside a transaction block."""

    def __init__(self, tenant):
        self.tenant, self.calls = tenant, []

    def __call__(self, *, key: str, tenant=None) -> Decimal:
        self.calls.append((key, connection.in_atomic_block))
        row = metering.record(tenant=tenant or self.tenant, source="api", key=key, user_id=None, api_key_id=None,
                              result=_result())
        return row.billed


def _record_all(writer: UsageWriter, rows: list[dict]) -> list:
    async def main():
        return await asyncio.gather(*(writer.record(**row) for row in rows), return_exceptions=True)

    return asyncio.run(main())


def test_rows_ending_together_share_one_transaction_and_each_caller_gets_its_own_amount(acme):
    spy = Spy(acme)
    billed = _record_all(UsageWriter(spy), [{"key": f"api:together-{i}"} for i in range(10)])

    markup = acme.plan.markup_percent
    by_hand = COST * (100 + markup) / 100
    assert billed == [by_hand] * 10
    assert [inside for _, inside in spy.calls] == [True] * 10  # one batch, inside one transaction
    rows = UsageRecord.objects.filter(tenant=acme, key__startswith="api:together-")
    assert rows.count() == 10 and {r.billed for r in rows} == {by_hand}


def test_a_lone_row_is_written_on_its_own_as_before(acme):
    spy = Spy(acme)
    assert _record_all(UsageWriter(spy), [{"key": "api:alone"}]) == [COST * (100 + acme.plan.markup_percent) / 100]
    assert spy.calls == [("api:alone", False)]  # autocommit: no transaction block of its own


def test_one_bad_row_fails_alone_and_the_rest_of_its_batch_is_written(acme, globex):
    # A key another workspace already holds: metering refuses it (ValidationError), which rolls the batch back.
    Spy(globex)(key="api:taken")
    spy = Spy(acme)
    rows = [{"key": f"api:batch-{i}"} for i in range(4)]
    rows.insert(2, {"key": "api:taken"})
    outcomes = _record_all(UsageWriter(spy), rows)

    assert isinstance(outcomes[2], ValidationError)
    by_hand = COST * (100 + acme.plan.markup_percent) / 100
    assert [o for i, o in enumerate(outcomes) if i != 2] == [by_hand] * 4
    assert UsageRecord.objects.filter(tenant=acme, key__startswith="api:batch-").count() == 4
    assert UsageRecord.objects.get(key="api:taken").tenant_id == globex.pk
    # The batch ran first (in a transaction, rolled back at the bad row), then every row again on its own.
    assert [inside for _, inside in spy.calls[:3]] == [True] * 3
    assert [(key, inside) for key, inside in spy.calls[3:]] == [(row["key"], False) for row in rows]


def test_a_connection_dropped_inside_a_batch_fails_only_its_row(acme):
    """What proxy/call.py's writer does on a database error (close the connection, raise): inside a batch the
    transaction is gone with it; the rows are written again one by one on a fresh connection."""
    from django.db import OperationalError

    spy = Spy(acme)

    def write_one(*, key):
        if key == "api:drop":
            spy.calls.append((key, connection.in_atomic_block))
            connection.close()
            raise OperationalError("server closed the connection unexpectedly")
        return spy(key=key)

    rows = [{"key": "api:keep-1"}, {"key": "api:drop"}, {"key": "api:keep-2"}]
    outcomes = _record_all(UsageWriter(write_one), rows)

    assert isinstance(outcomes[1], OperationalError)
    by_hand = COST * (100 + acme.plan.markup_percent) / 100
    assert (outcomes[0], outcomes[2]) == (by_hand, by_hand)
    assert sorted(UsageRecord.objects.filter(tenant=acme).values_list("key", flat=True)) == ["api:keep-1",
                                                                                               "api:keep-2"]
