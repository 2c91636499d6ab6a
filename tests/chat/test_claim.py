"""The turn runner's claim: one statement takes a queued turn and returns its tenant, plan and history."""

import uuid
from decimal import Decimal

import pytest
from django.forms.models import model_to_dict

from conversations import lifecycle, services, sweeper
from conversations.models import Message
from conversations.selectors import message_history
from routing.types import ChatMessage
from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def _send(conversation, text):
    return services.message_send(conversation=conversation, author=conversation.owner, text=text)


def _finish(answer, status, content):
    Message.objects.filter(pk=answer.pk).update(status=status, content=content)


def test_claim_takes_a_queued_turn_once(alice_chat, chat_redis):
    answer = _send(alice_chat, "What is a kiwi?")
    claimed = lifecycle.turn_claim(message_id=answer.pk, run_id=uuid.uuid4())
    assert claimed is not None
    assert lifecycle.turn_claim(message_id=answer.pk, run_id=uuid.uuid4()) is None  # a redelivered task
    assert lifecycle.turn_claim(message_id=answer.parent_id, run_id=uuid.uuid4()) is None  # a question
    assert lifecycle.turn_claim(message_id=answer.pk + 1000, run_id=uuid.uuid4()) is None  # gone
    row = Message.objects.get(pk=answer.pk)
    assert (row.status, row.run_count, row.run_id) == ("streaming", 1, claimed[0].run_id)


def test_claim_loads_what_the_orm_would(alice_chat, chat_redis):
    answer = _send(alice_chat, "What is a kiwi?")
    message, request = lifecycle.turn_claim(message_id=answer.pk, run_id=uuid.uuid4())
    tenant = Tenant.objects.select_related("plan").get(pk=alice_chat.tenant_id)
    assert model_to_dict(message.tenant) == model_to_dict(tenant)
    assert model_to_dict(message.tenant.plan) == model_to_dict(tenant.plan)
    assert message.tenant.plan.allowed_tiers == tenant.plan.allowed_tiers  # an array column
    row = Message.objects.get(pk=answer.pk)
    for name in ("id", "tenant_id", "conversation_id", "role", "status", "parent_id", "tier", "run_id", "run_count",
                 "started_at"):
        assert getattr(message, name) == getattr(row, name), name
    assert message.conversation.owner_id == alice_chat.owner_id
    assert message.usage_key == f"chat:{answer.pk}"
    assert request.messages == [ChatMessage(role="user", content="What is a kiwi?")]


def test_claim_history_keeps_each_questions_latest_finished_answer(alice_chat, chat_redis):
    first = _send(alice_chat, "Q1")
    _finish(first, "done", "A1")
    retried = services.message_retry(message=Message.objects.get(pk=first.pk), author=alice_chat.owner)
    _finish(retried, "cancelled", "A1, again")  # a stopped answer keeps its text and counts
    failed = _send(alice_chat, "Q2")
    _finish(failed, "failed", "")  # failed turns are left out
    empty = _send(alice_chat, "Q3")
    _finish(empty, "done", "   ")  # so are empty answers
    last = _send(alice_chat, "Q4")
    # A question after the one being answered is not part of its history (one answer at a time: a question
    # written in straight, as no send could while Q4 runs).
    later = Message.objects.create(tenant=alice_chat.tenant, conversation=alice_chat, role="user", content="Q5")

    expected = [("user", "Q1"), ("assistant", "A1, again"), ("user", "Q2"), ("user", "Q3"), ("user", "Q4")]
    _message, request = lifecycle.turn_claim(message_id=last.pk, run_id=uuid.uuid4())
    assert [(m.role, m.content) for m in request.messages] == expected
    assert [(m.role, m.content) for m in message_history(message=Message.objects.get(pk=last.pk))] == expected
    assert later.pk > last.parent_id


def test_claim_fails_a_suspended_tenants_turn(alice_chat, acme, chat_redis):
    answer = _send(alice_chat, "What is a kiwi?")
    acme.status = "suspended"
    acme.save()
    assert lifecycle.turn_claim(message_id=answer.pk, run_id=uuid.uuid4()) is None
    row = Message.objects.get(pk=answer.pk)
    assert row.status == "failed" and "suspended" in row.error


def test_send_writes_both_rows_and_names_the_chat_in_one_statement(alice_chat, chat_redis):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from conversations.models import Conversation

    _send(alice_chat, "Warm up")  # loads the catalog and the month's spend
    untitled = Conversation.objects.create(tenant=alice_chat.tenant, owner=alice_chat.owner)
    with CaptureQueriesContext(connection) as queries:
        answer = _send(untitled, "What is a kiwi?")
    # Inside the test's transaction the statement runs in a savepoint (so a refused one leaves the transaction
    # usable); outside one, as in a request, there is no savepoint: one statement of the chat's (the budget's
    # hold may read what it needs of its own).
    statements = [q["sql"] for q in queries.captured_queries
                  if "SAVEPOINT" not in q["sql"] and "conversations_" in q["sql"]]
    assert len(statements) == 1, statements
    question = Message.objects.get(pk=answer.parent_id)
    assert question.pk < answer.pk  # reading order: the question first
    assert (question.role, question.content, question.status) == ("user", "What is a kiwi?", "done")
    assert (answer.role, answer.status, answer.tier, answer.attempts) == ("assistant", "queued", "auto", [])
    untitled.refresh_from_db()
    assert untitled.title == "What is a kiwi?"


def test_refused_send_leaves_nothing(alice_chat, acme, chat_redis):
    acme.plan.monthly_cap = Decimal("0")
    acme.plan.save()
    before = (alice_chat.title, alice_chat.updated_at)
    with pytest.raises(services.ChatRefused):
        _send(alice_chat, "What is a kiwi?")
    assert not Message.objects.exists()
    alice_chat.refresh_from_db()
    assert (alice_chat.title, alice_chat.updated_at) == before


@pytest.mark.parametrize("cap", [None, Decimal("0")], ids=["within-budget", "over-budget"])
def test_rescued_turn_is_held_again_before_it_is_enqueued(alice_chat, acme, chat_redis, settings, monkeypatch, cap):
    from datetime import timedelta

    from django.utils import timezone

    from billing.models import UsageRecord

    enqueued = []
    monkeypatch.setattr(sweeper, "enqueue", enqueued.append)
    answer = _send(alice_chat, "What is a kiwi?")  # a send whose enqueue never happened (its process died)
    Message.objects.filter(pk=answer.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.CHAT_QUEUED_RESCUE_AFTER + 1))
    acme.plan.monthly_cap = cap
    acme.plan.save()
    counts = sweeper.turn_sweep_stale()
    row = Message.objects.get(pk=answer.pk)
    if cap is None:
        assert (counts["rescued"], enqueued, row.status) == (1, [answer.pk], "queued")
    else:
        assert (counts["rescued"], enqueued, row.status) == (0, [], "failed")
        assert "budget" in row.error.lower() or "cap" in row.error.lower(), row.error
        assert not UsageRecord.objects.exists()
