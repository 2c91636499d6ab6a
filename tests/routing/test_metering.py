"""The one metering path (routing.metering): hold, record or release, for chat turns and the proxy alike."""

import json
import pathlib
import re
from decimal import Decimal

import pytest

from billing import money
from billing.budget import BudgetExceeded
from billing.models import UsageRecord
from routing import metering
from routing.cost import estimate_max_cost, estimate_tokens, price_usage
from routing.types import Attempt, Prices, RouteResult, SmartDecision, ToolCall, Usage

from .conftest import ask, complete, run

pytestmark = pytest.mark.django_db

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _room_for_one_hold(tenant, tier="auto") -> None:
    """Cap the tenant's plan so that one hold of ask()'s estimate fits and a second does not."""
    billed = money.billed_amount(estimate_max_cost(tenant=tenant, tier=tier, request=ask()), tenant.plan.markup_percent)
    tenant.plan.monthly_cap = (billed * Decimal("1.5")).quantize(Decimal("0.01"))
    tenant.plan.save()


def test_hold_reserves_the_estimate_until_released(pro_tenant, redis_client):
    _room_for_one_hold(pro_tenant)
    metering.hold(tenant=pro_tenant, key="chat:1", tier="auto", request=ask())
    metering.hold(tenant=pro_tenant, key="chat:1", tier="auto", request=ask())  # the same key replaces its hold
    with pytest.raises(metering.HOLD_REFUSALS) as refused:
        metering.hold(tenant=pro_tenant, key="chat:2", tier="auto", request=ask())
    assert isinstance(refused.value, BudgetExceeded) and "cap" in str(refused.value)
    metering.release(tenant=pro_tenant, key="chat:1")
    metering.hold(tenant=pro_tenant, key="chat:2", tier="auto", request=ask())


@pytest.mark.parametrize("catalog", ["cached", "stale"])
def test_the_proxys_async_hold_holds_what_the_chats_hold_does(pro_tenant, redis_client, catalog):
    from routing.catalog import catalog_get, catalog_invalidate

    _room_for_one_hold(pro_tenant)
    if catalog == "cached":
        catalog_get()
    else:
        catalog_invalidate()  # the estimate then loads the catalog on a thread
    run(metering.ahold, tenant=pro_tenant, key="api:a", tier="auto", request=ask())
    with pytest.raises(BudgetExceeded):
        metering.hold(tenant=pro_tenant, key="chat:b", tier="auto", request=ask())
    metering.release(tenant=pro_tenant, key="api:a")
    metering.hold(tenant=pro_tenant, key="chat:b", tier="auto", request=ask())
    with pytest.raises(BudgetExceeded):
        run(metering.ahold, tenant=pro_tenant, key="api:c", tier="auto", request=ask())


def test_record_writes_the_calls_one_row_and_settles_its_hold(routing_env, pro_tenant, alice,
                                                              django_capture_on_commit_callbacks):
    _room_for_one_hold(pro_tenant)
    metering.hold(tenant=pro_tenant, key="api:r1", tier="auto", request=ask())
    result = complete(tenant=pro_tenant, tier="auto", request=ask())
    with django_capture_on_commit_callbacks(execute=True):
        row = metering.record(tenant=pro_tenant, source="api", key="api:r1", user_id=alice.pk, api_key_id=None,
                              result=result)
        again = metering.record(tenant=pro_tenant, source="api", key="api:r1", user_id=alice.pk, api_key_id=None,
                                result=result)
    assert UsageRecord.objects.filter(key="api:r1").count() == 1 and again.pk == row.pk
    expected = metering.usage_row(result)
    assert {name: getattr(row, name) for name in ("endpoint_slug", "provider", "tier", "input_tokens",
                                                  "output_tokens", "requested_tier")} == \
        {name: expected[name] for name in ("endpoint_slug", "provider", "tier", "input_tokens", "output_tokens",
                                           "requested_tier")}
    assert row.cost == result.cost and row.billed == money.billed_amount(result.cost, pro_tenant.plan.markup_percent)
    # The row settled its hold: another call's hold fits again.
    metering.hold(tenant=pro_tenant, key="api:r2", tier="auto", request=ask())


def test_record_writes_nothing_for_a_result_no_endpoint_answered(pro_tenant, redis_client):
    result = metering.estimated_result(tier="no-such-tier", prompt="hi", text="", reason="r", error="e")
    assert result.endpoint == "" and result.prices is None
    assert metering.record(tenant=pro_tenant, source="chat", key="chat:9", user_id=None, api_key_id=None,
                           result=result) is None
    assert not UsageRecord.objects.exists()


def test_estimated_result_prices_the_estimate_at_the_tiers_first_endpoint(pro_tenant):
    result = metering.estimated_result(tier="max", prompt="What is a kiwi?", text="A bird. " * 20,
                                       reason="died", error="stopped")
    first = metering.first_endpoint("max")
    assert (result.endpoint, result.prices, result.finish_reason) == (first.slug, first.prices, "error")
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.output_estimated) == (
        estimate_tokens("What is a kiwi?"), estimate_tokens("A bird. " * 20), True)
    assert result.cost == price_usage(prices=first.prices, usage=result.usage) > 0


def test_chat_and_proxy_meter_only_through_routing_metering():
    """The budget and the ledger are reached from the two request paths only through routing.metering, so the
    estimate, the hold, the usage row's mapping and the release are written once."""
    names = r"(a?budget_reserve|a?budget_release|usage_record|usage_row|estimate_max_cost)"
    direct = re.compile(rf"\b{names}\s*\(|\bimport\b.*\b{names}\b|\b(budget|billing\.services)\.{names}\b")
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                 for app in ("conversations", "proxy") for path in sorted((ROOT / app).rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1) if direct.search(line)]
    assert offenders == []


def test_a_result_kept_in_the_outbox_comes_back_whole():
    """What `record_later` keeps (`RouteResult.as_dict`, stored as JSON) reads back as the same result, money as
    Decimal and the answer's tool calls included."""
    result = RouteResult(
        text="", finish_reason="tool_calls", tier="max", endpoint="claude-opus-4-6", provider="anthropic",
        upstream_model="claude-opus-4-6", usage=Usage(input_tokens=1200, output_tokens=40, cache_read_tokens=800),
        attempts=[Attempt(endpoint="kimi-k2.5", provider="moonshot", outcome="error", error_kind="overloaded",
                          latency_ms=12.5, detail="529"),
                  Attempt(endpoint="claude-opus-4-6", provider="anthropic", outcome="ok", latency_ms=850.0,
                          ttft_ms=300.0)],
        fallback_count=1, reason="fallback", cost=Decimal("0.0123456789"),
        prices=Prices(input=Decimal("5"), output=Decimal("25"), cache_write=Decimal("6.25"),
                      cache_read=Decimal("0.5")),
        requested_tier="auto", smart=SmartDecision(score=0.91, threshold=0.6, level=5, version="v3", escalated=True),
        tool_calls=(ToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Auckland"}'),
                    ToolCall(id="toolu_2", name="get_time", arguments="{}")),
    )
    back = metering.result_from_dict(json.loads(json.dumps(result.as_dict())))
    assert back == result
    assert back.tool_calls[0].arguments == '{"city": "Auckland"}' and isinstance(back.cost, Decimal)
