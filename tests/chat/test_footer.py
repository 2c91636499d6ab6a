"""An answer's footer: smart Auto's decision in words, and a tier badge that names the tier that answered.

The words come from one place (`Message.route_summary`); the page, and the SSE `final` event of a streamed
answer, render them through the same partial."""

import re

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, RequestFactory

from conversations import services, sse
from conversations.models import Message
from tenants.models import Tenant
from tests.smart_prompts import prompt_at_or_above

from .conftest import integration, parse_sse

KIMI, OPUS = "kimi-k2.5", "claude-opus-4-6"


def _answer(**fields) -> Message:
    defaults = {"role": "assistant", "status": "done", "tier": "auto", "endpoint": KIMI, "provider": "moonshot",
                "upstream_model": KIMI}
    return Message(**{**defaults, **fields})


# --- the words, in one place ---


def test_an_escalated_turn_says_where_it_went_and_its_score():
    m = _answer(tier="max", endpoint=OPUS, route_score=0.8249, route_threshold=0.4, route_escalated=True)
    assert m.route_decision == "escalated"
    assert m.route_summary == "Auto → claude-opus-4-6 · escalated (0.82)"


def test_a_scored_turn_that_stayed_on_auto_names_its_model_and_score():
    m = _answer(route_score=0.1234, route_threshold=0.4, route_escalated=False)
    assert m.route_decision == "stayed"
    assert m.route_summary == "Auto · kimi-k2.5 (0.12)"


@pytest.mark.parametrize("fields", [
    {},  # the dial Off, a plan without MAX, or a MAX turn the budget served on Auto
    {"tier": "max", "endpoint": OPUS},  # a MAX turn
])
def test_an_unscored_turn_has_no_decision_line(fields):
    m = _answer(**fields)
    assert m.route_decision == "unscored"
    assert m.route_summary == "" and m.route_detail == ""


def test_the_detail_says_why_a_score_over_the_threshold_stayed_on_auto():
    held = _answer(route_score=0.9, route_threshold=0.4, route_escalated=False)
    assert held.route_summary == "Auto · kimi-k2.5 (0.90)"
    assert "threshold 0.40" in held.route_detail and "budget" in held.route_detail
    assert "budget" not in _answer(route_score=0.1, route_threshold=0.4, route_escalated=False).route_detail


def test_the_badge_names_the_tier_that_answered_and_none_when_no_model_did():
    assert _answer(tier="max", endpoint=OPUS).answered_tier == "max"
    assert _answer(tier="auto", endpoint=KIMI).answered_tier == "auto"
    assert _answer(tier="max", endpoint="", status="failed").answered_tier == ""


# --- the page ---


@pytest.fixture
def footers(alice, acme, client):
    """A conversation with one answer of each kind, rendered; returns {kind: footer html}."""
    conversation = services.conversation_create(tenant=acme, owner=alice, title="Footers")
    kinds = {
        "escalated": {"tier": "max", "endpoint": OPUS, "provider": "anthropic", "upstream_model": OPUS,
                      "route_score": 0.82, "route_threshold": 0.15, "route_escalated": True},
        "stayed": {"route_score": 0.12, "route_threshold": 0.15, "route_escalated": False},
        "unscored": {},
        "downgraded": {"tier": "auto"},  # asked on MAX (below: the conversation is MAX), answered on Auto
        "failed": {"tier": "max", "endpoint": "", "provider": "", "upstream_model": "", "status": "failed",
                   "error": "All models failed."},
    }
    ids = {}
    for kind, fields in kinds.items():
        question = Message.objects.create(tenant=acme, conversation=conversation, role="user", content=kind)
        answer = _answer(tenant=acme, conversation=conversation, parent=question, content=f"answer {kind}",
                         **fields)
        answer.save()
        ids[kind] = answer.pk
    conversation.tier = "max"
    conversation.save()
    client.force_login(alice)
    html = client.get(conversation.get_absolute_url()).content.decode()
    return {kind: _footer(html, pk) for kind, pk in ids.items()}


def _footer(html: str, pk: int) -> str:
    article = re.search(rf'<article id="msg-{pk}".*?</article>', html, re.S)[0]
    return re.search(r'<footer class="msg-meta">.*?</footer>', article, re.S)[0]


def _badge(footer: str) -> str | None:
    match = re.search(r'data-testid="tier-badge">([^<]*)<', footer)
    return match[1] if match else None


def _decision(footer: str) -> str | None:
    match = re.search(r'data-testid="route-decision"[^>]*>([^<]*)<', footer)
    return match[1] if match else None


def test_the_page_shows_an_escalated_turn_with_the_max_badge(footers):
    assert _badge(footers["escalated"]) == "MAX"
    assert _decision(footers["escalated"]) == "Auto → claude-opus-4-6 · escalated (0.82)"


def test_the_page_shows_a_turn_that_stayed_with_the_auto_badge(footers):
    assert _badge(footers["stayed"]) == "Auto"
    assert _decision(footers["stayed"]) == "Auto · kimi-k2.5 (0.12)"


def test_an_unscored_turn_keeps_the_plain_model_name(footers):
    assert _badge(footers["unscored"]) == "Auto"
    assert _decision(footers["unscored"]) is None
    assert '<span class="msg-model" title="moonshot · kimi-k2.5">kimi-k2.5</span>' in footers["unscored"]


def test_a_max_turn_served_on_auto_shows_auto_not_the_conversations_max(footers):
    assert _badge(footers["downgraded"]) == "Auto"
    assert _decision(footers["downgraded"]) is None


def test_a_turn_no_model_answered_shows_no_tier_badge(footers):
    assert _badge(footers["failed"]) is None


def test_the_final_sse_render_carries_the_decision(alice, acme):
    """What the stream's `final` event sends: the same footer, from the same partial."""
    conversation = services.conversation_create(tenant=acme, owner=alice)
    question = Message.objects.create(tenant=acme, conversation=conversation, role="user", content="q")
    answer = _answer(tenant=acme, conversation=conversation, parent=question, tier="max", endpoint=OPUS,
                     upstream_model=OPUS, route_score=0.5, route_threshold=0.2, route_escalated=True)
    answer.save()
    request = RequestFactory().get("/")
    request.user = alice
    html = sse.final_html_sync(tenant=acme, user=alice, conversation_id=conversation.pk, message_id=answer.pk,
                               request=request)
    footer = _footer(html, answer.pk)
    assert _badge(footer) == "MAX"
    assert _decision(footer) == "Auto → claude-opus-4-6 · escalated (0.50)"


# --- a real turn: worker, routing core, the streamed final event ---


@integration
@pytest.mark.slow
def test_a_streamed_escalated_turn_ends_with_the_decision_and_the_max_badge(celery_worker, fake_provider, alice,
                                                                             acme, chat_redis):
    Tenant.objects.filter(pk=acme.pk).update(auto_escalation=10)
    acme.refresh_from_db()
    fake_provider.scenario(OPUS, {"text": "A careful proof.", "delay_ms": 5})
    text, score = prompt_at_or_above(10)
    conversation = services.conversation_create(tenant=acme, owner=alice)
    answer = services.message_send(conversation=conversation, author=alice, text=text)

    async def read_final():
        client = AsyncClient()
        await client.aforce_login(alice)
        response = await client.get(f"/chat/{conversation.pk}/messages/{answer.pk}/stream/")
        raw = ""
        iterator = aiter(response.streaming_content)
        try:
            async for chunk in iterator:
                raw += chunk.decode()
                finals = [e for e in parse_sse(raw) if e.get("event") == "final"]
                if finals:
                    return finals[0]["data"]
        finally:
            await iterator.aclose()
        return None

    html = async_to_sync(read_final)()
    stored = Message.objects.get(pk=answer.pk)
    assert (stored.tier, stored.endpoint, stored.route_escalated) == ("max", OPUS, True)
    assert stored.route_score == pytest.approx(score)
    footer = _footer(html, answer.pk)
    assert _badge(footer) == "MAX"
    assert _decision(footer) == f"Auto → claude-opus-4-6 · escalated ({score:.2f})"
