"""Export a conversation as Markdown and JSON: messages, models, tokens and cost (money as exact decimals)."""

import json
from decimal import Decimal

import pytest
from django.urls import reverse

from conversations import services
from conversations.models import Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(acme, alice):
    conversation = services.conversation_create(tenant=acme, owner=alice, title="Kiwi <notes>")
    conversation.instructions = "Answer briefly."
    conversation.save()
    q1 = Message.objects.create(tenant=acme, conversation=conversation, role="user", content="What is a kiwi?")
    first = Message.objects.create(tenant=acme, conversation=conversation, role="assistant", parent=q1, status="done",
                                   content="A bird.", tier="auto", endpoint="kimi-k2.5", upstream_model="kimi-k2.5",
                                   input_tokens=5, output_tokens=2, cost=Decimal("0.0000090000"),
                                   billed=Decimal("0.0000108000"))
    second = Message.objects.create(tenant=acme, conversation=conversation, role="assistant", parent=q1,
                                    status="done", content="A flightless **bird**.", tier="max",
                                    endpoint="claude-opus-4-6", upstream_model="claude-opus-4-6", input_tokens=5,
                                    output_tokens=3, cost=Decimal("0.0001000000"), billed=Decimal("0.0001200000"))
    return conversation, q1, first, second


def test_json_has_every_message_with_models_tokens_and_exact_money(client, alice, chat):
    conversation, q1, first, second = chat
    client.force_login(alice)
    response = client.get(reverse("conversations:export_json", args=[conversation.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="kiwiclaw-chat-{conversation.pk}.json"'
    data = json.loads(response.content)
    assert data["conversation"]["title"] == "Kiwi <notes>" and data["conversation"]["instructions"] == "Answer briefly."
    by_id = {m["id"]: m for m in data["messages"]}
    assert [m["id"] for m in data["messages"]] == [q1.pk, first.pk, second.pk]
    assert by_id[second.pk]["model"] == "claude-opus-4-6" and by_id[second.pk]["shown"] is True
    assert by_id[first.pk]["shown"] is False and by_id[first.pk]["parent"] == q1.pk
    assert by_id[first.pk]["cost"] == "0.0000090000" and by_id[first.pk]["billed"] == "0.0000108000"
    # By hand: 5 + 5 input, 2 + 3 output tokens; billed 0.0000108 + 0.00012 = 0.0001308 (every version counts).
    assert data["totals"] == {"answers": 2, "input_tokens": 10, "output_tokens": 5, "cost": "0.0001090000",
                              "billed": "0.0001308000"}


def test_markdown_shows_the_turns_as_on_screen_with_their_facts(client, alice, chat):
    conversation, _q1, _first, _second = chat
    client.force_login(alice)
    response = client.get(reverse("conversations:export_markdown", args=[conversation.pk]))
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    text = response.content.decode()
    assert text.startswith("# Kiwi <notes>\n")
    assert "## Instructions\n\nAnswer briefly." in text
    assert "## You\n\nWhat is a kiwi?" in text
    assert "## Assistant (version 2 of 2)\n\nA flightless **bird**." in text
    assert "A bird." not in text  # the version not on screen (it is in the JSON, and in the totals)
    assert "_claude-opus-4-6 · 5 in / 3 out tokens · $0.00012_" in text
    assert "2 answer(s), 10 input and 5 output tokens, billed $0.00013 (every version counted)" in text


def test_another_members_conversation_is_not_exported(client, carol, chat):
    conversation = chat[0]
    client.force_login(carol)
    for name in ("conversations:export_json", "conversations:export_markdown"):
        assert client.get(reverse(name, args=[conversation.pk])).status_code == 404
