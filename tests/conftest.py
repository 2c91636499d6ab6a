"""Fixtures shared by the whole suite.

Tests run against real Postgres and Redis (DATABASE_URL / REDIS_URL, or the embedded servers `make test`
starts). The Redis database named by REDIS_URL is flushed around each test that uses `redis_client`.
Area fixtures live in each test package's own conftest.py.
"""

import pytest
import redis as redis_lib
from django.conf import settings

from tests.factories import MembershipFactory, TenantFactory, UserFactory


@pytest.fixture
def redis_client():
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def acme(db):
    return TenantFactory(slug="acme", name="Acme Corp", plan=_plan("pro"))


@pytest.fixture
def globex(db):
    return TenantFactory(slug="globex", name="Globex", plan=_plan("free"))


@pytest.fixture
def alice(acme):
    user = UserFactory(email="alice@acme.test", name="Alice Admin")
    MembershipFactory(user=user, tenant=acme, role="admin")
    return user


@pytest.fixture
def carol(acme):
    user = UserFactory(email="carol@acme.test", name="Carol Member")
    MembershipFactory(user=user, tenant=acme, role="member")
    return user


@pytest.fixture
def bob(globex):
    user = UserFactory(email="bob@globex.test", name="Bob Member")
    MembershipFactory(user=user, tenant=globex, role="member")
    return user


def _plan(slug):
    from tenants.models import Plan

    return Plan.objects.get(slug=slug)
