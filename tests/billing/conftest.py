"""Billing fixtures: usage rows written through the real service, finance users, past-month rows.

Costs are computed by hand in the tests (tokens × USD per million), the way routing's cost function will.
"""

import itertools
from datetime import datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission

from billing import money
from billing.models import UsageRecord
from billing.services import usage_record
from tenants.models import Plan
from tenants.plans import ensure_default_plans
from tests.factories import UserFactory

MILLION = Decimal(1_000_000)

# Published prices (USD per million tokens): input, output, cache write, cache read.
PRICES = {
    "claude-opus-4-6": ("anthropic", Decimal("5"), Decimal("25"), Decimal("6.25"), Decimal("0.50")),
    "claude-sonnet-4-6": ("anthropic", Decimal("3"), Decimal("15"), Decimal("3.75"), Decimal("0.30")),
    "kimi-k2.5": ("moonshot", Decimal("0.60"), Decimal("3.00"), Decimal("0"), Decimal("0.10")),
}

_keys = itertools.count(1)


def hand_cost(endpoint, input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0) -> Decimal:
    _, p_in, p_out, p_cw, p_cr = PRICES[endpoint]
    return (input_tokens * p_in + output_tokens * p_out + cache_write_tokens * p_cw
            + cache_read_tokens * p_cr) / MILLION


def record_usage(tenant, *, endpoint="kimi-k2.5", input_tokens=1000, output_tokens=500, cache_read_tokens=0,
                 cache_write_tokens=0, output_estimated=False, key=None, source="chat", user_id=None,
                 api_key_id=None, tier=None, cost=None, end_user=None):
    provider, p_in, p_out, p_cw, p_cr = PRICES[endpoint]
    return usage_record(
        tenant=tenant, source=source, key=key or f"{source}:{next(_keys)}", user_id=user_id, api_key_id=api_key_id,
        end_user=end_user,
        endpoint_slug=endpoint, provider=provider, tier=tier or ("max" if endpoint.startswith("claude") else "auto"),
        input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens, output_estimated=output_estimated,
        price_input=p_in, price_output=p_out, price_cache_write=p_cw, price_cache_read=p_cr,
        cost=cost if cost is not None else hand_cost(endpoint, input_tokens, output_tokens, cache_read_tokens,
                                                      cache_write_tokens),
    )


def record_usage_at(tenant, recorded_at: datetime, *, endpoint="kimi-k2.5", input_tokens=1000, output_tokens=500,
                    cache_read_tokens=0, cache_write_tokens=0, output_estimated=False, user_id=None):
    """A row in a past month. The service always stamps the database's now(), so tests of ended months insert
    the row directly, computing cost and billed exactly as the service does."""
    provider, p_in, p_out, p_cw, p_cr = PRICES[endpoint]
    cost = hand_cost(endpoint, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    markup = tenant.plan.markup_percent
    return UsageRecord.objects.create(
        tenant=tenant, source="chat", key=f"chat:past-{next(_keys)}", user_id=user_id, endpoint_slug=endpoint,
        provider=provider, tier="auto", input_tokens=input_tokens, output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens, cache_write_tokens=cache_write_tokens,
        output_estimated=output_estimated, price_input=p_in, price_output=p_out, price_cache_write=p_cw,
        price_cache_read=p_cr, cost=money.to_ledger(cost), markup_percent=markup,
        billed=money.billed_amount(cost, markup), recorded_at=recorded_at,
    )


@pytest.fixture
def plans(db):
    """The default plans. Transactional tests flush the database, data migrations included, so re-create them."""
    ensure_default_plans(Plan)
    return {p.slug: p for p in Plan.objects.all()}


@pytest.fixture
def finance_user(db):
    """A staff user in the `finance` group, as `seed_demo` creates it."""
    group, _ = Group.objects.get_or_create(name="finance")
    group.permissions.add(Permission.objects.get(codename="view_finance", content_type__app_label="billing"))
    user = UserFactory(email="fran@kiwiclaw.test", name="Fran Finance", is_staff=True)
    user.groups.add(group)
    return user


@pytest.fixture
def budget_redis(redis_client, settings):
    """A clean Redis db for budget counters (infra's clients follow the test's REDIS_URL)."""
    yield redis_client
