"""Routing fixtures: short timeouts and backoff so failure tests stay fast (never sub-second), a clean Redis (breakers), a run()
helper for the async core, and tenants on each plan."""

import pytest
from asgiref.sync import async_to_sync

from routing.catalog import catalog_invalidate
from routing.types import ChatMessage, ChatRequest
from tests.factories import TenantFactory


@pytest.fixture(autouse=True)
def routing_settings(settings):
    settings.ROUTING_CONNECT_TIMEOUT = 1.0
    # Long enough that a loaded machine's slow answer is never taken for a hang (an answer is ~10 ms here); the
    # hang tests wait this long once per hanging endpoint.
    settings.ROUTING_READ_TIMEOUT = 2.0
    settings.ROUTING_FIRST_BYTE_TIMEOUT = 2.0
    settings.ROUTING_FIRST_DELTA_TIMEOUT = 2.0
    settings.ROUTING_STREAM_IDLE_TIMEOUT = 2.0
    settings.ROUTING_DEADLINE_SECONDS = 10.0
    settings.ROUTING_RETRY_ATTEMPTS = 2
    settings.ROUTING_BACKOFF_BASE_SECONDS = 0.02
    settings.ROUTING_BACKOFF_MAX_SECONDS = 0.1
    settings.ROUTING_BREAKER_THRESHOLD = 3
    settings.ROUTING_BREAKER_COOLDOWN_SECONDS = 0.5
    settings.ROUTING_BREAKER_TRIAL_SECONDS = 5.0
    settings.ROUTING_CATALOG_TTL_SECONDS = 0.0
    catalog_invalidate()
    yield settings
    catalog_invalidate()


def run(fn, *args, **kwargs):
    """Run an async function from a sync test. async_to_sync (not asyncio.run) so that the core's
    sync_to_async reads run in this thread and see the test transaction."""
    return async_to_sync(fn)(*args, **kwargs)


def collect(**kwargs) -> list:
    """All events of route_stream."""
    from routing.core import route_stream

    async def go():
        return [event async for event in route_stream(**kwargs)]

    return run(go)


def complete(**kwargs):
    from routing.core import route_complete

    return run(route_complete, **kwargs)


def ask(text: str = "What is a kiwi?", *, stream: bool = True, **kwargs) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content=text)], stream=stream, **kwargs)


@pytest.fixture
def pro_tenant(acme):
    return acme


@pytest.fixture
def free_tenant(globex):
    return globex


@pytest.fixture
def enterprise_tenant(db):
    from tenants.models import Plan

    return TenantFactory(slug="initech", name="Initech", plan=Plan.objects.get(slug="enterprise"))


@pytest.fixture
def routing_env(fake_provider, redis_client):
    """The fake provider plus a clean Redis; yields the fake provider handle."""
    return fake_provider
