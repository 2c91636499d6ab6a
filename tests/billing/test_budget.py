"""Budgets: the hard cap is enforced before dispatch, exactly, also under concurrency."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from billing import budget, reconcile
from billing.budget import BudgetExceeded, abudget_release, abudget_reserve, budget_release, budget_reserve
from billing.models import UsageRecord
from billing.months import month_start, next_month
from billing.selectors import tenant_month_spend
from tests.billing.conftest import record_usage
from tests.factories import TenantFactory

# Kimi at 0.60 in / 3.00 out: 1,000,000 input tokens cost $0.60; on Free (+50%) that bills $0.90.


def _fill_to(tenant, billed_target: Decimal):
    """Ledger rows whose billed sum is exactly `billed_target` on the Free plan (+50%)."""
    record_usage(tenant, endpoint="kimi-k2.5", input_tokens=0, output_tokens=0, cost=billed_target / Decimal("1.5"))


def _dispatch_if_allowed(tenant, key, cost, dispatched):
    budget_reserve(tenant=tenant, key=key, cost=cost)
    dispatched.append(key)


def test_at_the_cap_a_request_is_refused_with_a_message_for_people_and_nothing_dispatched(globex, budget_redis):
    _fill_to(globex, Decimal("5.00"))  # Free plan cap $5.00
    dispatched = []
    with pytest.raises(BudgetExceeded) as exc:
        _dispatch_if_allowed(globex, "chat:1", Decimal("0.01"), dispatched)
    resets = next_month(month_start())
    assert str(exc.value) == (
        f"Globex has reached its $5.00 monthly spending cap on the Free plan. "
        f"Usage resets on {resets.day} {resets:%B}; an admin can upgrade the plan.")
    assert exc.value.cap == Decimal("5.00") and exc.value.spend == Decimal("5.00")
    assert dispatched == []
    assert budget_redis.hlen(f"kc:budget:res:{globex.pk}") == 0


def test_a_request_that_could_pass_the_cap_is_refused_before_the_cap_is_reached(globex, budget_redis):
    _fill_to(globex, Decimal("4.50"))
    budget_reserve(tenant=globex, key="chat:ok", cost=Decimal("0.30"))  # bills 0.45 → 4.95
    with pytest.raises(BudgetExceeded, match=r"too close to its \$5\.00 monthly spending cap.*\$0\.05 is left"):
        budget_reserve(tenant=globex, key="chat:big", cost=Decimal("0.10"))  # bills 0.15 → 5.10


def test_spend_is_seeded_from_the_ledger_on_a_cache_miss(globex, budget_redis):
    record_usage(globex, input_tokens=123_457, output_tokens=9_999)
    expected = UsageRecord.objects.aggregate(s=Sum("billed"))["s"]
    assert tenant_month_spend(tenant=globex) == expected
    assert budget_redis.exists(budget.spend_key(globex.pk, month_start()))


def test_usage_record_settles_its_reservation_after_commit(globex, budget_redis, django_capture_on_commit_callbacks):
    assert tenant_month_spend(tenant=globex) == Decimal("0")
    budget_reserve(tenant=globex, key="chat:7", cost=Decimal("1"))
    assert budget_redis.hget(f"kc:budget:res:{globex.pk}", "chat:7") is not None
    with django_capture_on_commit_callbacks(execute=True):
        row = record_usage(globex, key="chat:7", input_tokens=1_000_000, output_tokens=0)
    assert row.billed == Decimal("0.9000000000")
    assert budget_redis.hget(f"kc:budget:res:{globex.pk}", "chat:7") is None
    assert tenant_month_spend(tenant=globex) == Decimal("0.9")


def test_release_frees_the_hold_of_a_failed_request(globex, budget_redis):
    budget_reserve(tenant=globex, key="chat:a", cost=Decimal("3"))  # holds 4.50 of 5.00
    with pytest.raises(BudgetExceeded):
        budget_reserve(tenant=globex, key="chat:b", cost=Decimal("1"))
    budget_release(tenant=globex, key="chat:a")
    budget_reserve(tenant=globex, key="chat:b", cost=Decimal("1"))


def test_a_crashed_requests_hold_expires(globex, budget_redis, settings):
    settings.BILLING_RESERVATION_TTL_SECONDS = 0.1
    budget_reserve(tenant=globex, key="chat:crashed", cost=Decimal("3"))
    with pytest.raises(BudgetExceeded):
        budget_reserve(tenant=globex, key="chat:next", cost=Decimal("1"))
    time.sleep(0.15)
    budget_reserve(tenant=globex, key="chat:next", cost=Decimal("1"))


def test_a_plan_without_cap_never_refuses(db, plans, budget_redis):
    plans["enterprise"].monthly_cap = None
    plans["enterprise"].save()
    tenant = TenantFactory(slug="bigco", plan=plans["enterprise"])
    budget_reserve(tenant=tenant, key="api:huge", cost=Decimal("1000000"))


def test_float_costs_are_refused(globex, budget_redis):
    with pytest.raises(TypeError):
        budget_reserve(tenant=globex, key="chat:f", cost=0.5)


def test_reconcile_repairs_a_counter_that_drifted_from_the_ledger(globex, budget_redis):
    record_usage(globex, input_tokens=1_000_000, output_tokens=0)  # bills 0.90
    assert tenant_month_spend(tenant=globex) == Decimal("0.9")
    budget_redis.set(budget.spend_key(globex.pk, month_start()), 0)  # e.g. a settle lost to a crash
    assert reconcile.budget_reconcile_all_tenants() == 1
    assert tenant_month_spend(tenant=globex) == Decimal("0.9")
    assert reconcile.budget_reconcile_all_tenants() == 0


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_requests_near_the_cap_never_pass_it(plans, budget_redis):
    tenant = TenantFactory(slug="globex", name="Globex", plan=plans["free"])
    _fill_to(tenant, Decimal("4.00"))  # $1.00 left under the $5.00 cap
    cost = Decimal("0.1")  # reserves and bills $0.15: room for 6 of the 50
    barrier = threading.Barrier(50)

    def request(i):
        try:
            barrier.wait(timeout=10)
            try:
                budget_reserve(tenant=tenant, key=f"api:c{i}", cost=cost)
            except BudgetExceeded:
                return False
            record_usage(tenant, key=f"api:c{i}", source="api", input_tokens=0, output_tokens=0, cost=cost)
            return True
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(request, range(50)))
    spend = UsageRecord.objects.filter(tenant=tenant).aggregate(s=Sum("billed"))["s"]
    assert outcomes.count(True) == 6
    assert spend == Decimal("4.90") <= Decimal("5.00")
    assert tenant_month_spend(tenant=tenant) == spend  # every settle landed in the cache
    assert budget_redis.hlen(f"kc:budget:res:{tenant.pk}") == 0


def test_fifty_concurrent_async_reservations_near_the_cap(globex, budget_redis):
    _fill_to(globex, Decimal("4.00"))
    tenant_month_spend(tenant=globex)  # seed the counter; the async path then never touches the database

    async def main():
        async def one(i):
            try:
                await abudget_reserve(tenant=globex, key=f"api:a{i}", cost=Decimal("0.1"))
                return True
            except BudgetExceeded:
                return False
        outcomes = await asyncio.gather(*(one(i) for i in range(50)))
        await abudget_release(tenant=globex, key="api:a0")
        return outcomes

    outcomes = asyncio.run(main())
    assert outcomes.count(True) == 6
    held = budget_redis.hvals(f"kc:budget:res:{globex.pk}")
    assert len(held) == 6 - (1 if outcomes[0] else 0)  # api:a0 was released
