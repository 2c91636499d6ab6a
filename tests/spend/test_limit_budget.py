"""Member and API key limits in the budget: reserved with the workspace's cap in one script, refused by name,
settled into their own counters, and exact under concurrency."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from billing import budget, reconcile
from billing.budget import BudgetExceeded, budget_release, budget_reserve, key_spend_limit, member_spend_limit
from billing.models import UsageRecord
from billing.months import month_start, next_month
from tenants.models import Membership, Plan
from tests.billing.conftest import record_usage
from tests.factories import TenantFactory, UserFactory, make_api_key

from .conftest import set_key_limits, set_member_limits

# acme is on Pro: +30% markup, $500 cap. A provider cost of $0.50 bills $0.65.


def _reset():
    resets = next_month(month_start())
    return f"Usage resets on {resets.day} {resets:%B}; a workspace admin can raise the limit."


def test_a_key_over_its_limit_is_refused_by_name_and_holds_nothing(acme, carol_api_key, spend_redis):
    key = set_key_limits(carol_api_key[0], limit="1.00")
    limit = key_spend_limit(key)
    budget_reserve(tenant=acme, key="api:1", cost=Decimal("0.50"), limits=[limit])  # holds 0.65 of 1.00
    with pytest.raises(BudgetExceeded) as info:
        budget_reserve(tenant=acme, key="api:2", cost=Decimal("0.50"), limits=[limit])
    assert info.value.limit == "key"
    assert str(info.value) == ("The API key “carol ci” is too close to its $1.00 monthly spending limit for this "
                               f"request (up to $0.65); $0.35 is left this month. {_reset()}")
    # Nothing of the refused request is held, in the key's scope or the workspace's.
    assert spend_redis.hkeys(f"kc:budget:res:{acme.pk}") == [b"api:1"]
    assert spend_redis.hkeys(f"kc:budget:lres:key:{acme.pk}:{key.pk}") == [b"api:1"]
    # Another key of the workspace is not limited by this one.
    budget_reserve(tenant=acme, key="api:3", cost=Decimal("0.50"))


def test_a_members_limit_counts_their_chat_and_their_keys(acme, carol, carol_membership, carol_api_key,
                                                          spend_redis, django_capture_on_commit_callbacks):
    membership = set_member_limits(carol_membership, limit="1.00")
    with django_capture_on_commit_callbacks(execute=True):  # a chat turn of hers: $0.60 cost bills $0.78
        record_usage(acme, source="chat", user_id=carol.pk, input_tokens=1_000_000, output_tokens=0)
    limit = member_spend_limit(Membership.objects.select_related("user").get(pk=membership.pk))
    assert budget.limit_month_spend(limit) == Decimal("0.78")
    with pytest.raises(BudgetExceeded) as info:  # a key request of hers up to $0.26 passes her $1.00
        budget_reserve(tenant=acme, key="api:k", cost=Decimal("0.20"),
                       limits=[key_spend_limit(carol_api_key[0]), limit])
    assert info.value.limit == "member"
    assert str(info.value).startswith("The member carol@acme.test is too close to its $1.00 monthly spending limit")
    budget_reserve(tenant=acme, key="api:k", cost=Decimal("0.10"), limits=[limit])  # $0.13 fits


def test_the_workspace_cap_is_checked_with_the_limits_and_named_first(globex, spend_redis):
    user = UserFactory(email="gus@globex.test")
    key, _ = make_api_key(tenant=globex, user=user, name="gus")
    key = set_key_limits(key, limit="100.00")
    record_usage(globex, input_tokens=0, output_tokens=0, cost=Decimal("5.00") / Decimal("1.5"))  # Free: at cap
    with pytest.raises(BudgetExceeded) as info:
        budget_reserve(tenant=globex, key="api:x", cost=Decimal("0.01"), limits=[key_spend_limit(key)])
    assert info.value.limit == "workspace" and "Globex has reached its $5.00 monthly spending cap" in str(info.value)


def test_a_usage_row_settles_every_scope_its_hold_took(acme, carol, carol_api_key, carol_membership, spend_redis,
                                                       django_capture_on_commit_callbacks):
    key = set_key_limits(carol_api_key[0], limit="5.00")
    membership = set_member_limits(carol_membership, limit="7.00")
    limits = [key_spend_limit(key), member_spend_limit(Membership.objects.select_related("user").get(
        pk=membership.pk))]
    budget_reserve(tenant=acme, key="api:s", cost=Decimal("1.00"), limits=limits)
    with django_capture_on_commit_callbacks(execute=True):
        row = record_usage(acme, key="api:s", source="api", user_id=carol.pk, api_key_id=key.pk,
                           input_tokens=1_000_000, output_tokens=100_000)  # 0.60 + 0.30 = 0.90, bills 1.17
    assert row.billed == Decimal("1.1700000000")
    assert [budget.limit_month_spend(limit) for limit in limits] == [Decimal("1.17"), Decimal("1.17")]
    for scope in (f"kc:budget:res:{acme.pk}", f"kc:budget:lres:key:{acme.pk}:{key.pk}",
                  f"kc:budget:lres:member:{acme.pk}:{carol.pk}"):
        assert spend_redis.hlen(scope) == 0
    assert not spend_redis.exists(f"kc:budget:hold:{acme.pk}:api:s")


def test_release_drops_the_hold_in_every_scope(acme, carol_api_key, spend_redis):
    key = set_key_limits(carol_api_key[0], limit="1.00")
    budget_reserve(tenant=acme, key="api:r", cost=Decimal("0.70"), limits=[key_spend_limit(key)])
    with pytest.raises(BudgetExceeded):
        budget_reserve(tenant=acme, key="api:r2", cost=Decimal("0.70"), limits=[key_spend_limit(key)])
    budget_release(tenant=acme, key="api:r")
    assert spend_redis.hlen(f"kc:budget:lres:key:{acme.pk}:{key.pk}") == 0
    budget_reserve(tenant=acme, key="api:r2", cost=Decimal("0.70"), limits=[key_spend_limit(key)])


def test_an_edited_limit_counts_from_the_ledger_not_from_an_old_counter(acme, carol, carol_api_key, spend_redis):
    key = set_key_limits(carol_api_key[0], limit="2.00")
    old = key_spend_limit(key)
    assert budget.limit_month_spend(old) == Decimal("0")
    # Rows written while the key had no hold record of its own (e.g. while it had no limit) miss the old counter.
    record_usage(acme, source="api", api_key_id=key.pk, user_id=carol.pk, input_tokens=1_000_000, output_tokens=0)
    assert budget.limit_month_spend(old) == Decimal("0")
    new = key_spend_limit(set_key_limits(key, limit="3.00"))
    assert new.version != old.version
    assert budget.limit_month_spend(new) == Decimal("0.78")


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_requests_near_a_keys_limit_never_pass_it(spend_redis):
    tenant = TenantFactory(slug="acme", name="Acme Corp", plan=Plan.objects.get(slug="pro"))
    user = UserFactory(email="dev@acme.test")
    key, _ = make_api_key(tenant=tenant, user=user, name="agent")
    key = set_key_limits(key, limit="2.00")
    record_usage(tenant, source="api", api_key_id=key.pk, input_tokens=0, output_tokens=0,
                 cost=Decimal("1.00") / Decimal("1.3"))  # $1.00 of the key's $2.00 spent
    limit = key_spend_limit(key)
    cost = Decimal("0.10")  # reserves and bills $0.13: room for 7 of the 50 ($0.91)
    barrier = threading.Barrier(50)

    def request(i):
        try:
            barrier.wait(timeout=10)
            try:
                budget_reserve(tenant=tenant, key=f"api:c{i}", cost=cost, limits=[limit])
            except BudgetExceeded as exc:
                assert exc.limit == "key"
                return False
            record_usage(tenant, key=f"api:c{i}", source="api", api_key_id=key.pk, input_tokens=0,
                         output_tokens=0, cost=cost)
            return True
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(request, range(50)))
    spend = UsageRecord.objects.filter(api_key_id=key.pk).aggregate(s=Sum("billed"))["s"]
    assert outcomes.count(True) == 7
    assert spend == Decimal("1.91") <= Decimal("2.00")
    assert budget.limit_month_spend(limit) == spend  # every settle landed in the key's counter
    assert spend_redis.hlen(f"kc:budget:lres:key:{tenant.pk}:{key.pk}") == 0


def test_the_reconcile_task_repairs_member_and_key_counters(acme, carol, carol_api_key, carol_membership,
                                                            spend_redis):
    key = set_key_limits(carol_api_key[0], limit="5.00")
    member = member_spend_limit(Membership.objects.select_related("user").get(
        pk=set_member_limits(carol_membership, limit="5.00").pk))
    record_usage(acme, source="api", api_key_id=key.pk, user_id=carol.pk, input_tokens=1_000_000, output_tokens=0)
    limits = [key_spend_limit(key), member]
    assert [budget.limit_month_spend(limit) for limit in limits] == [Decimal("0.78")] * 2
    for limit in limits:  # e.g. a settle lost to a crash
        spend_redis.set(limit.keys(month_start())[0], 0)
    assert reconcile.budget_reconcile_all_tenants() == 2
    assert [budget.limit_month_spend(limit) for limit in limits] == [Decimal("0.78")] * 2
    assert reconcile.budget_reconcile_all_tenants() == 0
