"""Smart Auto in chat turns, end to end on a real Celery worker: the same rules as on /v1 (one decision in the
routing core), stored on the message and on its usage row."""

from decimal import Decimal

import pytest

from billing.models import UsageRecord
from conversations import services
from routing.smart import router
from routing.types import ChatMessage, ChatRequest
from tests.factories import MembershipFactory
from tests.smart_prompts import prompt_at_or_above, prompt_below

from .conftest import integration, wait_finished

pytestmark = [integration, pytest.mark.slow]

OPUS, KIMI = "claude-opus-4-6", "kimi-k2.5"
LEVEL = 10  # the widest dial setting
HARD, _ = prompt_at_or_above(LEVEL)  # prompts chosen by their scores, on either side of its threshold
EASY, _ = prompt_below(LEVEL)


def _score(text: str) -> float:
    return router().score_request(ChatRequest(messages=[ChatMessage(role="user", content=text)]))


def _dial(tenant, level):
    tenant.auto_escalation = level
    tenant.save(update_fields=["auto_escalation"])


def _turn(conversation, text):
    question = services.message_send(conversation=conversation, author=conversation.owner, text=text)
    return wait_finished(question.pk)


def test_a_hard_auto_turn_is_escalated_and_recorded(celery_worker, fake_provider, alice_chat, acme):
    _dial(acme, LEVEL)
    answer = _turn(alice_chat, HARD)
    assert answer.status == "done", answer.error
    assert (answer.endpoint, answer.tier, answer.route_escalated) == (OPUS, "max", True)
    assert answer.route_score == pytest.approx(_score(HARD))
    assert answer.route_score >= answer.route_threshold == pytest.approx(router().threshold(LEVEL))
    assert answer.router_version == router().version
    row = UsageRecord.objects.get(key=f"chat:{answer.pk}")
    assert (row.tier, row.requested_tier, row.route_escalated) == ("max", "auto", True)
    assert row.route_score == pytest.approx(answer.route_score)


def test_an_easy_auto_turn_stays_on_auto(celery_worker, fake_provider, alice_chat, acme):
    _dial(acme, LEVEL)
    answer = _turn(alice_chat, EASY)
    assert (answer.endpoint, answer.tier, answer.route_escalated) == (KIMI, "auto", False)
    assert answer.route_score == pytest.approx(_score(EASY))
    row = UsageRecord.objects.get(key=f"chat:{answer.pk}")
    assert row.counterfactual_cost > row.cost


def test_the_dial_at_off_never_escalates_a_turn(celery_worker, fake_provider, alice_chat, acme):
    _dial(acme, 0)
    answer = _turn(alice_chat, HARD)
    assert (answer.endpoint, answer.tier, answer.route_score, answer.route_escalated) == (KIMI, "auto", None, None)


def test_a_plan_without_max_never_escalates_a_turn(celery_worker, fake_provider, bob, globex):
    _dial(globex, LEVEL)
    chat = services.conversation_create(tenant=globex, owner=bob)
    answer = _turn(chat, HARD)
    assert (answer.endpoint, answer.tier, answer.route_escalated) == (KIMI, "auto", None)


def test_a_max_conversation_stays_on_max_unscored(celery_worker, fake_provider, alice_chat, acme):
    _dial(acme, LEVEL)
    services.conversation_set_tier(conversation=alice_chat, tier="max")
    answer = _turn(alice_chat, EASY)
    assert (answer.endpoint, answer.tier, answer.route_score) == (OPUS, "max", None)


def test_the_budget_downgrade_wins_over_escalation_in_chat(celery_worker, fake_provider, alice_chat, acme):
    from billing.services import usage_record

    # Pro: cap $500 billed, MAX served on Auto from 90% ($450). A provider cost of $360 bills $468 (30% markup):
    # past the downgrade line, still under the cap, so the turn is taken.
    usage_record(tenant=acme, source="api", key="api:big-spend", user_id=None, api_key_id=None,
                 endpoint_slug=OPUS, provider="anthropic", tier="max", input_tokens=1, output_tokens=1,
                 cache_read_tokens=0, cache_write_tokens=0, output_estimated=False, price_input=Decimal("5"),
                 price_output=Decimal("25"), price_cache_write=Decimal("6.25"), price_cache_read=Decimal("0.5"),
                 cost=Decimal("360"))
    _dial(acme, LEVEL)
    answer = _turn(alice_chat, HARD)
    assert answer.status == "done", answer.error
    assert (answer.endpoint, answer.tier, answer.route_escalated) == (KIMI, "auto", False)
    assert "not escalated" in answer.routing_reason


def test_each_member_shares_the_tenants_dial(celery_worker, fake_provider, acme):
    _dial(acme, LEVEL)
    carol = MembershipFactory(tenant=acme).user
    chat = services.conversation_create(tenant=acme, owner=carol)
    assert _turn(chat, HARD).route_escalated is True


def test_a_member_limited_to_auto_is_never_escalated(celery_worker, fake_provider, alice_chat, acme):
    _dial(acme, LEVEL)
    membership = alice_chat.owner.memberships.get(tenant=acme)
    membership.allowed_tiers = ["auto"]
    membership.save(update_fields=["allowed_tiers"])
    answer = _turn(alice_chat, HARD)
    assert answer.status == "done", answer.error
    assert (answer.endpoint, answer.tier, answer.route_escalated) == (KIMI, "auto", None)
    # The workspace's dial is untouched: only that member's turns route with it off.
    acme.refresh_from_db()
    assert acme.auto_escalation == LEVEL
