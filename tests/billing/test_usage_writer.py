"""billing/usage_writer.py: usage rows written from an event loop on the loop's own Postgres connection. Rows of
calls that end together share one transaction, each call gets its own row (or its own error), a batch that
fails is written again row by row, and the budget holds are settled once the rows are in. Real Postgres and
Redis; the rows go through routing.metering.arecord, as the proxy's do."""

import asyncio
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, connection

from billing.budget import spend_key
from billing.models import UsageRecord
from billing.months import month_start
from billing.services import usage_record
from infra.db.aio import aclose_pool
from routing import metering
from routing.types import ChatMessage, ChatRequest, Prices, RouteResult, Usage
from tenants.models import Tenant
from tests.db_faults import database_unavailable

pytestmark = pytest.mark.django_db(transaction=True)

PRICES = Prices(input=Decimal("0.6"), output=Decimal("3"), cache_write=Decimal("0.6"), cache_read=Decimal("0.1"))
# 5 input tokens at $0.60 and 12 output tokens at $3.00 per million: (3 + 36) / 1,000,000
COST = Decimal("0.000039")


def _result(output_tokens: int = 12, cost: Decimal = COST) -> RouteResult:
    return RouteResult(text="kiwis", finish_reason="stop", tier="auto", endpoint="kimi-k2.5", provider="moonshot",
                       upstream_model="kimi-k2.5", usage=Usage(input_tokens=5, output_tokens=output_tokens),
                       cost=cost, prices=PRICES, requested_tier="auto")


def _billed_by_hand(tenant) -> Decimal:
    return COST * (100 + tenant.plan.markup_percent) / 100


def _record_all(calls: list[dict]) -> list:
    """Every call's `metering.arecord` at once, on one fresh loop, as calls ending together on a server would."""
    async def main():
        try:
            return await asyncio.gather(*(metering.arecord(source="api", user_id=None, api_key_id=None,
                                                           **{"result": _result(), **call}) for call in calls),
                                        return_exceptions=True)
        finally:
            await aclose_pool()

    return asyncio.run(main())


def _transactions(keys) -> set:
    """The ids of the transactions that wrote these rows (Postgres's xmin): one id, one commit."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text FROM billing_usagerecord WHERE key = ANY(%s)", [list(keys)])
        return {row[0] for row in cursor.fetchall()}


def test_rows_ending_together_share_one_transaction_and_each_call_gets_its_own_row(acme):
    keys = [f"api:together-{i}" for i in range(10)]
    rows = _record_all([{"tenant": acme, "key": key} for key in keys])

    assert [row.key for row in rows] == keys
    assert {row.billed for row in rows} == {_billed_by_hand(acme)}
    stored = UsageRecord.objects.filter(tenant=acme, key__in=keys)
    assert stored.count() == 10 and {r.billed for r in stored} == {_billed_by_hand(acme)}
    # All ten reached the writer before it ran: one transaction, one commit.
    assert len(_transactions(keys)) == 1


def test_a_lone_row_is_written_and_its_hold_settled(acme, budget_redis):
    metering.hold(tenant=acme, key="api:alone", tier="auto",
                  request=ChatRequest(messages=[ChatMessage(role="user", content="hi")], max_tokens=100))
    assert budget_redis.hkeys(f"kc:budget:res:{acme.pk}") == [b"api:alone"]

    [row] = _record_all([{"tenant": acme, "key": "api:alone"}])

    assert row.billed == _billed_by_hand(acme) and row.pk is not None
    assert UsageRecord.objects.get(key="api:alone").billed == _billed_by_hand(acme)
    assert budget_redis.hkeys(f"kc:budget:res:{acme.pk}") == []  # the hold ended
    # 1e-10 USD units: the counter holds exactly what the ledger does.
    assert int(budget_redis.get(spend_key(acme.pk, month_start()))) == int(_billed_by_hand(acme) * 10**10)


def test_a_repeated_key_returns_the_first_row_and_counts_once(acme, budget_redis):
    metering.hold(tenant=acme, key="api:twice", tier="auto",
                  request=ChatRequest(messages=[ChatMessage(role="user", content="hi")], max_tokens=100))
    [first] = _record_all([{"tenant": acme, "key": "api:twice"}])
    [again] = _record_all([{"tenant": acme, "key": "api:twice", "result": _result(output_tokens=500,
                                                                                 cost=Decimal("0.0015"))}])

    assert again.pk == first.pk and again.billed == first.billed
    assert UsageRecord.objects.filter(key="api:twice").count() == 1
    assert int(budget_redis.get(spend_key(acme.pk, month_start()))) == int(_billed_by_hand(acme) * 10**10)


def test_a_key_another_workspace_holds_fails_alone(acme, globex):
    usage_record(tenant=globex, source="api", key="api:taken", user_id=None, api_key_id=None,
                 **metering.usage_row(_result()))
    keys = ["api:mine-1", "api:mine-2", "api:taken", "api:mine-3"]
    outcomes = _record_all([{"tenant": acme, "key": key} for key in keys])

    assert isinstance(outcomes[2], ValidationError)
    assert [o.billed for i, o in enumerate(outcomes) if i != 2] == [_billed_by_hand(acme)] * 3
    assert UsageRecord.objects.get(key="api:taken").tenant_id == globex.pk
    assert UsageRecord.objects.filter(tenant=acme).count() == 3


def test_bad_input_fails_alone_before_any_statement(acme):
    broken = _result()
    broken.usage = Usage(input_tokens=-5, output_tokens=12)
    outcomes = _record_all([{"tenant": acme, "key": "api:fine-1"}, {"tenant": acme, "key": "api:bad",
                                                                     "result": broken},
                            {"tenant": acme, "key": "api:fine-2"}])

    assert isinstance(outcomes[1], ValidationError) and "input_tokens" in outcomes[1].message_dict
    assert sorted(UsageRecord.objects.values_list("key", flat=True)) == ["api:fine-1", "api:fine-2"]


def test_a_row_the_database_refuses_rolls_its_batch_back_then_fails_alone(acme):
    """A workspace that does not exist: its row breaks the foreign key at commit, which rolls the whole batch
    back; every row is then written on its own, and only that one fails."""
    ghost = Tenant(pk=acme.pk + 10_000, name="Ghost", slug="ghost", plan=acme.plan)
    calls = [{"tenant": acme, "key": "api:first"}] + [
        {"tenant": ghost if i == 2 else acme, "key": f"api:batch-{i}"} for i in range(5)]
    outcomes = _record_all(calls)

    assert isinstance(outcomes[3], IntegrityError)  # Django's class, whichever connection it ran on
    assert all(o.billed == _billed_by_hand(acme) for i, o in enumerate(outcomes) if i != 3)
    written = [f"api:batch-{i}" for i in (0, 1, 3, 4)]
    assert UsageRecord.objects.filter(key__in=written).count() == 4
    assert not UsageRecord.objects.filter(key="api:batch-2").exists()
    assert len(_transactions(written)) == 4  # each on its own after the batch failed


def test_a_database_outage_raises_operational_error_and_the_next_write_gets_a_live_connection(acme):
    """What the proxy answers by keeping the row in the outbox (proxy/call.py): Django's OperationalError. Once
    the database is back, the loop's pool replaces the dead connection and writes again."""
    async def main():
        try:
            first = await metering.arecord(tenant=acme, source="api", key="api:before", user_id=None,
                                           api_key_id=None, result=_result())
            outage = database_unavailable()
            await sync_to_async(outage.__enter__)()
            try:
                with pytest.raises(OperationalError):
                    await metering.arecord(tenant=acme, source="api", key="api:during", user_id=None,
                                           api_key_id=None, result=_result())
            finally:
                await sync_to_async(outage.__exit__)(None, None, None)
            for _ in range(50):  # the pool reconnects in the background; the write right after may still fail
                try:
                    return first, await metering.arecord(tenant=acme, source="api", key="api:after",
                                                         user_id=None, api_key_id=None, result=_result())
                except OperationalError:
                    await asyncio.sleep(0.1)
            raise AssertionError("no write succeeded within 5 s of the database's return")
        finally:
            await aclose_pool()

    first, after = asyncio.run(main())
    assert (first.key, after.key) == ("api:before", "api:after")
    assert sorted(UsageRecord.objects.values_list("key", flat=True)) == ["api:after", "api:before"]
