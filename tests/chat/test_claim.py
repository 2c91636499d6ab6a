"""The turn runner's claim: one statement takes a queued turn and returns its tenant, plan and history."""

import uuid

import pytest
from django.forms.models import model_to_dict

from conversations import services
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
    claimed = services.turn_claim(message_id=answer.pk, run_id=uuid.uuid4())
    assert claimed is not None
    assert services.turn_claim(message_id=answer.pk, run_id=uuid.uuid4()) is None  # a redelivered task
    assert services.turn_claim(message_id=answer.parent_id, run_id=uuid.uuid4()) is None  # a question
    assert services.turn_claim(message_id=answer.pk + 1000, run_id=uuid.uuid4()) is None  # gone
    row = Message.objects.get(pk=answer.pk)
    assert (row.status, row.run_count, row.run_id) == ("streaming", 1, claimed[0].run_id)


def test_claim_loads_what_the_orm_would(alice_chat, chat_redis):
    answer = _send(alice_chat, "What is a kiwi?")
    message, request = services.turn_claim(message_id=answer.pk, run_id=uuid.uuid4())
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
    later = _send(alice_chat, "Q5")  # after the question being answered: not part of its history

    expected = [("user", "Q1"), ("assistant", "A1, again"), ("user", "Q2"), ("user", "Q3"), ("user", "Q4")]
    _message, request = services.turn_claim(message_id=last.pk, run_id=uuid.uuid4())
    assert [(m.role, m.content) for m in request.messages] == expected
    assert [(m.role, m.content) for m in message_history(message=Message.objects.get(pk=last.pk))] == expected
    assert later.parent_id > last.parent_id


def test_claim_fails_a_suspended_tenants_turn(alice_chat, acme, chat_redis):
    answer = _send(alice_chat, "What is a kiwi?")
    acme.status = "suspended"
    acme.save()
    assert services.turn_claim(message_id=answer.pk, run_id=uuid.uuid4()) is None
    row = Message.objects.get(pk=answer.pk)
    assert row.status == "failed" and "suspended" in row.error
