"""Smart Auto in the routing core: which requests are scored, which escalate, and what wins over escalation.

The prompts are chosen by their computed scores (asserted first), so a retrained router that no longer tells
them apart fails loudly here instead of silently testing nothing.
"""

from decimal import Decimal

import pytest

from routing.cost import estimate_max_cost
from routing.policy import policy_decide
from routing.smart import router
from routing.types import SmartDecision
from tests.factories import TenantFactory
from tests.smart_prompts import prompt_at_or_above, prompt_below

from .conftest import ask, complete

OPUS, KIMI = "claude-opus-4-6", "kimi-k2.5"
LEVEL = 10  # the widest dial setting
HARD, _ = prompt_at_or_above(LEVEL)  # prompts chosen by their scores, on either side of its threshold
EASY, _ = prompt_below(LEVEL)


def _dial(tenant, level):
    tenant.auto_escalation = level
    tenant.save(update_fields=["auto_escalation"])
    return tenant


def test_a_hard_auto_request_is_escalated_to_the_max_chain(routing_env, pro_tenant):
    result = complete(tenant=_dial(pro_tenant, LEVEL), tier="auto", request=ask(HARD))
    assert (result.endpoint, result.tier, result.requested_tier) == (OPUS, "max", "auto")
    smart = result.smart
    assert smart.escalated and smart.level == LEVEL and smart.version == router().version
    assert smart.score >= smart.threshold == router().threshold(LEVEL)
    assert "escalated to MAX" in result.reason


def test_an_easy_auto_request_stays_on_auto_with_its_score_recorded(routing_env, pro_tenant):
    result = complete(tenant=_dial(pro_tenant, LEVEL), tier="auto", request=ask(EASY))
    assert (result.endpoint, result.tier) == (KIMI, "auto")
    assert result.smart is not None and not result.smart.escalated
    assert result.smart.score == router().score_request(ask(EASY))


def test_the_same_request_gets_the_same_decision(routing_env, pro_tenant):
    _dial(pro_tenant, LEVEL)
    first = complete(tenant=pro_tenant, tier="auto", request=ask(HARD)).smart
    second = complete(tenant=pro_tenant, tier="auto", request=ask(HARD)).smart
    assert first == second


def test_the_dial_at_off_never_scores_or_escalates(routing_env, pro_tenant):
    result = complete(tenant=_dial(pro_tenant, 0), tier="auto", request=ask(HARD))
    assert (result.endpoint, result.tier, result.smart) == (KIMI, "auto", None)


def test_a_tenant_without_a_setting_follows_its_plans_default_level(routing_env, pro_tenant):
    pro_tenant.plan.auto_escalation = LEVEL
    pro_tenant.plan.save(update_fields=["auto_escalation"])
    result = complete(tenant=_dial(pro_tenant, None), tier="auto", request=ask(HARD))
    assert result.endpoint == OPUS and result.smart.level == LEVEL


def test_a_plan_without_max_never_escalates(routing_env, free_tenant):
    result = complete(tenant=_dial(free_tenant, LEVEL), tier="auto", request=ask(HARD))
    assert (result.endpoint, result.tier, result.smart) == (KIMI, "auto", None)


def test_the_policy_refuses_escalation_on_a_plan_without_max(routing_env, free_tenant):
    """Even handed a decision over its threshold, the policy keeps a plan without MAX on the Auto chain."""
    from routing.catalog import catalog_get

    decision = SmartDecision(score=0.99, threshold=0.1, level=LEVEL, version="test")
    plan = policy_decide(catalog=catalog_get(), tier="auto", plan=free_tenant.plan, spend=None, prompt_tokens=10,
                         max_tokens=100, health={}, smart=decision)
    assert plan.tier == "auto" and plan.chain[0].slug == KIMI and not plan.smart.escalated


def test_max_requests_stay_on_the_max_chain_unscored(routing_env, pro_tenant):
    result = complete(tenant=_dial(pro_tenant, LEVEL), tier="max", request=ask(EASY))
    assert (result.endpoint, result.tier, result.requested_tier, result.smart) == (OPUS, "max", "max", None)


def test_a_model_named_explicitly_is_not_scored(routing_env, enterprise_tenant):
    result = complete(tenant=_dial(enterprise_tenant, LEVEL), tier="auto", request=ask(HARD), model=KIMI)
    assert (result.endpoint, result.requested_tier, result.smart) == (KIMI, "", None)


def test_the_budget_downgrade_wins_over_escalation(routing_env, pro_tenant):
    from billing.services import usage_record

    # Pro: cap 500 billed USD, MAX served on Auto from 90%. A provider cost of 400 bills 520 (30% markup).
    usage_record(tenant=pro_tenant, source="api", key="api:big-spend", user_id=None, api_key_id=None,
                 endpoint_slug=OPUS, provider="anthropic", tier="max", input_tokens=1, output_tokens=1,
                 cache_read_tokens=0, cache_write_tokens=0, output_estimated=False, price_input=Decimal("5"),
                 price_output=Decimal("25"), price_cache_write=Decimal("6.25"), price_cache_read=Decimal("0.5"),
                 cost=Decimal("400"))
    result = complete(tenant=_dial(pro_tenant, LEVEL), tier="auto", request=ask(HARD))
    assert (result.endpoint, result.tier) == (KIMI, "auto")
    assert result.smart.score >= result.smart.threshold and not result.smart.escalated
    assert "not escalated: 90% of the monthly cap is used" in result.reason


def test_fallback_stays_within_the_escalated_chain(routing_env, pro_tenant):
    routing_env.scenario(OPUS, {"status": 529})
    result = complete(tenant=_dial(pro_tenant, LEVEL), tier="auto", request=ask(HARD))
    assert result.tier == "max" and result.smart.escalated
    assert result.endpoint == "claude-sonnet-4-6"  # the MAX chain's next model, not Kimi
    assert result.fallback_count == 1


def test_the_budget_hold_of_an_auto_request_covers_escalation(routing_env, pro_tenant):
    request = ask(HARD)
    off = estimate_max_cost(tenant=_dial(pro_tenant, 0), tier="auto", request=request)
    on = estimate_max_cost(tenant=_dial(pro_tenant, LEVEL), tier="auto", request=request)
    assert on == estimate_max_cost(tenant=pro_tenant, tier="max", request=request) > off


def test_usage_row_records_the_decision_and_the_counterfactual(routing_env, pro_tenant):
    from billing.models import UsageRecord
    from billing.services import usage_record
    from routing.metering import usage_row

    result = complete(tenant=_dial(pro_tenant, LEVEL), tier="auto", request=ask(EASY))
    usage_record(tenant=pro_tenant, source="api", key="api:smart-row", user_id=None, api_key_id=None,
                 **usage_row(result))
    row = UsageRecord.objects.get(key="api:smart-row")
    assert (row.requested_tier, row.tier, row.route_escalated) == ("auto", "auto", False)
    assert row.route_score == pytest.approx(result.smart.score)
    assert row.router_version == router().version
    # The same tokens at Opus's published prices ($5 / $25 per million), by hand.
    usage = result.usage
    expected = (Decimal(usage.input_tokens) * 5 + Decimal(usage.output_tokens) * 25) / Decimal(1_000_000)
    assert row.counterfactual_cost == expected.quantize(Decimal("0.0000000001"))


def test_another_tenants_dial_does_not_apply(routing_env, pro_tenant):
    _dial(TenantFactory(slug="umbrella", plan=pro_tenant.plan), LEVEL)
    result = complete(tenant=_dial(pro_tenant, 0), tier="auto", request=ask(HARD))
    assert result.smart is None and result.endpoint == KIMI
