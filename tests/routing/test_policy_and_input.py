"""Policy decisions and bad input: each refused with a clear error before any provider is called."""

from decimal import Decimal

import pytest

from routing.errors import ModelNotAllowed, RequestInvalid, TierNotAllowed
from routing.types import ChatMessage, ChatRequest
from tests.factories import TenantFactory

from .conftest import ask, complete

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "tier,request_kwargs,message",
    [
        ("auto", {"messages": []}, "at least one message"),
        ("auto", {"messages": [ChatMessage("user", [{"type": "image", "url": "x"}])]}, "only text content"),
        ("auto", {"messages": [ChatMessage("user", "   ")]}, "is empty"),
        ("auto", {"messages": [ChatMessage("system", "hi")]}, "role 'system'"),
        ("turbo", {"messages": [ChatMessage("user", "hi")]}, "Unknown tier 'turbo'"),
        ("auto", {"messages": [ChatMessage("user", "hi")], "max_tokens": 0}, "max_tokens must be"),
        ("auto", {"messages": [ChatMessage("user", "hi")], "max_tokens": 10_000_000}, "max_tokens must be"),
        ("auto", {"messages": [ChatMessage("user", "hi")], "max_tokens": "100"}, "max_tokens must be"),
        ("auto", {"messages": [ChatMessage("user", "hi")], "temperature": 3}, "temperature"),
        ("auto", {"messages": [ChatMessage("user", "hi")], "stop": "END"}, "stop must be"),
    ],
)
def test_bad_input_is_refused_before_any_provider_call(routing_env, pro_tenant, tier, request_kwargs, message):
    with pytest.raises(RequestInvalid) as caught:
        complete(tenant=pro_tenant, tier=tier, request=ChatRequest(**request_kwargs))
    assert message in caught.value.message
    assert routing_env.requests() == []


def test_tier_not_in_plan_is_refused_not_switched(routing_env, free_tenant):
    with pytest.raises(TierNotAllowed) as caught:
        complete(tenant=free_tenant, tier="max", request=ask())
    assert caught.value.message == "MAX is not part of the Free plan — ask your admin to upgrade."
    assert routing_env.requests() == []


def test_explicit_model_needs_a_plan_that_allows_it(routing_env, pro_tenant, enterprise_tenant):
    with pytest.raises(ModelNotAllowed):
        complete(tenant=pro_tenant, tier="max", request=ask(), model="claude-haiku-4-5")
    assert routing_env.requests() == []
    result = complete(tenant=enterprise_tenant, tier="max", request=ask(), model="claude-haiku-4-5")
    assert result.endpoint == "claude-haiku-4-5"
    assert "requested explicitly" in result.reason
    with pytest.raises(ModelNotAllowed):
        complete(tenant=enterprise_tenant, tier="max", request=ask(), model="gpt-17")


def test_endpoints_with_too_small_a_context_window_are_skipped(routing_env, pro_tenant):
    from routing.models import ModelEndpoint

    ModelEndpoint.objects.filter(slug="claude-opus-4-6").update(context_window=1000)
    result = complete(tenant=pro_tenant, tier="max", request=ask("x " * 2000, max_tokens=100))
    assert result.endpoint == "claude-sonnet-4-6"
    assert "skipped claude-opus-4-6: needs ~" in result.reason
    assert routing_env.models_called() == ["claude-sonnet-4-6"]


def test_prompt_too_long_for_every_endpoint_is_bad_input(routing_env, pro_tenant):
    with pytest.raises(RequestInvalid) as caught:
        complete(tenant=pro_tenant, tier="auto", request=ask("word " * 300_000))
    assert "too long" in caught.value.message
    assert routing_env.requests() == []


def test_max_is_served_on_auto_past_the_plans_cap_share(routing_env, pro_tenant):
    from billing.services import usage_record

    # Pro: cap 500 billed USD, MAX served on Auto from 90%. A provider cost of 400 bills 520 (30% markup).
    from routing.catalog import catalog_get

    opus = catalog_get().endpoints["claude-opus-4-6"]
    usage_record(tenant=pro_tenant, source="api", key="api:big-spend", user_id=None, api_key_id=None,
                 endpoint_slug=opus.slug, provider=opus.provider, tier="max", input_tokens=1,
                 output_tokens=1, cache_read_tokens=0, cache_write_tokens=0, output_estimated=False,
                 price_input=opus.prices.input, price_output=opus.prices.output,
                 price_cache_write=opus.prices.cache_write, price_cache_read=opus.prices.cache_read,
                 cost=Decimal("400"))
    result = complete(tenant=pro_tenant, tier="max", request=ask())
    assert result.endpoint == "kimi-k2.5"
    # The tier that answered, never a badge for one that did not; what was asked for is kept beside it.
    assert (result.tier, result.requested_tier) == ("auto", "max")
    assert "MAX served on Auto: 90% of the monthly cap is used" in result.reason
    other_pro = TenantFactory(slug="umbrella", plan=pro_tenant.plan)
    assert complete(tenant=other_pro, tier="max", request=ask()).endpoint == "claude-opus-4-6"


def test_disabled_endpoint_is_left_out_of_the_chain(routing_env, pro_tenant):
    from routing.models import ModelEndpoint

    ModelEndpoint.objects.filter(slug="kimi-k2.5").update(enabled=False)
    result = complete(tenant=pro_tenant, tier="auto", request=ask())
    assert result.endpoint == "claude-haiku-4-5"
    assert "skipped kimi-k2.5: disabled" in result.reason
