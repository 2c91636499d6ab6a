"""Spend limits per member and per API key, and budget alerts: shared fixtures."""

from decimal import Decimal

import pytest

from tenants.models import ApiKey, Membership
from tests.factories import make_api_key


@pytest.fixture
def spend_redis(redis_client):
    """A clean Redis db for the budget's counters (infra's clients follow the test's REDIS_URL)."""
    yield redis_client


def set_key_limits(key: ApiKey, *, limit=None, tiers=None, expires_at=None) -> ApiKey:
    from tenants.limits import api_key_limits_set

    return api_key_limits_set(api_key=key, actor=key.created_by, monthly_limit=limit, allowed_tiers=tiers,
                              expires_at=expires_at)


def set_member_limits(membership: Membership, *, limit=None, tiers=None) -> Membership:
    from tenants.limits import membership_limits_set

    return membership_limits_set(membership=membership, actor=None, monthly_limit=limit, allowed_tiers=tiers)


@pytest.fixture
def carol_membership(carol, acme):
    return Membership.objects.get(user=carol, tenant=acme)


@pytest.fixture
def carol_api_key(carol, acme):
    return make_api_key(tenant=acme, user=carol, name="carol ci")


CENT = Decimal("0.01")


# The live proxy (a uvicorn process on the test database) and its clients, from the proxy tests' fixtures.
from tests.proxy.conftest import live_db, proxy_server, server  # noqa: E402, F401
