"""Rate limits live in Redis: they hold in total across server processes, per key and per tenant."""

import asyncio

import httpx
import pytest

from proxy.auth import KeyIdentity
from proxy.ratelimit import arate_limit_settle, arate_limit_take
from tests.factories import MembershipFactory, PlanFactory, TenantFactory, UserFactory, make_api_key
from tests.proxy.conftest import ProxyServer

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def _member_key(tenant):
    user = UserFactory()
    MembershipFactory(user=user, tenant=tenant, role="member")
    return make_api_key(tenant=tenant, user=user)[1]


@pytest.fixture
def second_server(proxy_server, fake_provider, live_db):
    server = ProxyServer()
    yield server
    server.stop()


def _statuses(urls_and_keys) -> list[int]:
    statuses = []
    for url, key in urls_and_keys:
        response = httpx.post(f"{url}/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {key}"},
                              timeout=20)
        statuses.append(response.status_code)
    return statuses


def test_per_key_limit_holds_across_two_processes(server, second_server):
    tenant = TenantFactory(plan=PlanFactory(slug="rpm-key-4", allowed_tiers=["auto"], rpm_key=4))
    key = _member_key(tenant)
    # Alternate between the two processes: 4 requests pass in total, not 4 per process.
    calls = [(server.url, key), (second_server.url, key)] * 4
    assert _statuses(calls) == [200] * 4 + [429] * 4


def test_per_tenant_limit_holds_across_keys_and_processes(server, second_server):
    tenant = TenantFactory(plan=PlanFactory(slug="rpm-tenant-3", allowed_tiers=["auto"], rpm_tenant=3))
    key_a, key_b = _member_key(tenant), _member_key(tenant)
    calls = [(server.url, key_a), (second_server.url, key_b), (second_server.url, key_a),
             (server.url, key_b), (second_server.url, key_a)]
    assert _statuses(calls) == [200, 200, 200, 429, 429]


def _identity(plan, *, key_id=1, tenant_id=1):
    tenant = TenantFactory.build(pk=tenant_id, plan=plan)
    return KeyIdentity(key_id=key_id, user=None, membership=None, tenant=tenant)


def test_tokens_per_minute_charges_the_estimate_first_and_the_rest_afterwards(redis_client):
    plan = PlanFactory.build(tpm_key=1000)
    identity = _identity(plan, key_id=990001)

    async def scenario():
        first = await arate_limit_take(identity, tokens=600)
        second = await arate_limit_take(identity, tokens=600)  # only ~400 left
        await arate_limit_settle(identity, tokens=-500)  # the first request used 500 fewer than estimated
        third = await arate_limit_take(identity, tokens=600)
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert first.allowed and not second.allowed and third.allowed
    assert second.limit == "tokens per minute for this API key" and second.retry_after >= 1


def test_a_plan_without_limits_is_never_refused(redis_client):
    identity = _identity(PlanFactory.build(), key_id=990002)

    async def many():
        return [await arate_limit_take(identity, tokens=10_000_000) for _ in range(50)]

    assert all(d.allowed for d in asyncio.run(many()))
