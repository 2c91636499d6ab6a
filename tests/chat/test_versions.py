"""Edit and versions: retry and edit add a version of a turn's answer in place (‹ 2/3 ›), the history sent to
the model follows the versions on screen, and each version is billed once."""

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import UsageRecord
from conversations import selectors, services
from conversations.models import Message
from routing.cost import price_usage
from routing.types import Prices, Usage

from .conftest import integration, wait_finished

KIMI = "kimi-k2.5"
KIMI_PRICES = Prices(input=Decimal("0.60"), output=Decimal("3.00"), cache_write=Decimal("0.60"),
                     cache_read=Decimal("0.10"))


def _finish(answer, text, status="done"):
    Message.objects.filter(pk=answer.pk).update(status=status, content=text)
    return Message.objects.select_related("conversation", "tenant__plan", "parent").get(pk=answer.pk)


def _history(answer):
    return [(m.role, m.content) for m in selectors.message_history(message=Message.objects.get(pk=answer.pk))]


def _turns(conversation):
    return selectors.conversation_turns(tenant=conversation.tenant, user=conversation.owner, conversation=conversation)


@pytest.mark.django_db
def test_retry_adds_a_version_in_place_and_shows_it(alice_chat, chat_redis):
    first = _finish(services.message_send(conversation=alice_chat, author=alice_chat.owner, text="Q1"), "A1")
    second = _finish(services.message_retry(message=first, author=alice_chat.owner), "A1 again")
    [turn] = _turns(alice_chat)
    assert (turn.question.content, turn.answer.pk, turn.index, turn.count) == ("Q1", second.pk, 2, 2)
    assert turn.previous.pk == first.pk and turn.next is None
    services.version_select(answer=first)
    [turn] = _turns(alice_chat)
    assert (turn.answer.pk, turn.index, turn.next.pk) == (first.pk, 1, second.pk)


@pytest.mark.django_db
def test_the_history_follows_the_versions_on_screen(alice_chat, chat_redis):
    owner = alice_chat.owner
    first = _finish(services.message_send(conversation=alice_chat, author=owner, text="Q1"), "A1")
    retried = _finish(services.message_retry(message=first, author=owner), "A1 retried")
    services.version_select(answer=first)  # the user went back to version 1
    answer = services.message_send(conversation=alice_chat, author=owner, text="Q2")
    assert _history(answer) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2")]
    _finish(answer, "A2")
    services.version_select(answer=retried)
    third = services.message_send(conversation=alice_chat, author=owner, text="Q3")
    assert _history(third) == [("user", "Q1"), ("assistant", "A1 retried"), ("user", "Q2"), ("assistant", "A2"),
                               ("user", "Q3")]


@pytest.mark.django_db
def test_an_edited_question_is_a_new_version_of_its_turn(alice_chat, chat_redis):
    owner = alice_chat.owner
    first = _finish(services.message_send(conversation=alice_chat, author=owner, text="Q1"), "A1")
    second = _finish(services.message_send(conversation=alice_chat, author=owner, text="Q2"), "A2")
    edited = services.message_edit(question=first.parent, author=owner, text="Q1, better")
    # The edited answer is asked with the earlier turns only (none), then its own question.
    assert _history(edited) == [("user", "Q1, better")]
    _finish(edited, "A1, better")
    turns = _turns(alice_chat)
    assert [(t.question.content, t.answer.content, t.index, t.count) for t in turns] == [
        ("Q1, better", "A1, better", 2, 2), ("Q2", "A2", 1, 1)]
    # A later question sees the edited version, which is on screen.
    answer = services.message_send(conversation=alice_chat, author=owner, text="Q3")
    assert _history(answer) == [("user", "Q1, better"), ("assistant", "A1, better"), ("user", "Q2"),
                                ("assistant", "A2"), ("user", "Q3")]
    assert second.parent.version_of_id is None and Message.objects.get(pk=edited.parent_id).version_of_id == first.parent_id


@pytest.mark.django_db
def test_edit_refuses_bad_input_and_a_running_turn(alice_chat, chat_redis):
    owner = alice_chat.owner
    answer = services.message_send(conversation=alice_chat, author=owner, text="Q1")
    question = Message.objects.get(pk=answer.parent_id)
    with pytest.raises(services.TurnInProgress):
        services.message_edit(question=question, author=owner, text="Q1 again")
    _finish(answer, "A1")
    with pytest.raises(services.ChatRefused, match="Type a message first"):
        services.message_edit(question=question, author=owner, text="  ")
    with pytest.raises(services.ChatRefused, match="Only your own message"):
        services.message_edit(question=answer, author=owner, text="x")
    assert Message.objects.count() == 2


@pytest.mark.django_db
def test_the_page_shows_the_selected_version_with_its_navigation(client, alice, alice_chat, chat_redis):
    client.force_login(alice)
    first = _finish(services.message_send(conversation=alice_chat, author=alice, text="Q1"), "Version one")
    second = _finish(services.message_retry(message=first, author=alice), "Version two")
    page = client.get(alice_chat.get_absolute_url()).content.decode()
    assert "Version two" in page and "Version one" not in page and "2/2" in page
    response = client.post(reverse("conversations:version", args=[alice_chat.pk, first.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    fragment = response.content.decode()
    assert "Version one" in fragment and "Version two" not in fragment and "1/2" in fragment
    assert f'id="turn-{first.parent_id}"' in fragment
    edit = client.post(reverse("conversations:edit", args=[alice_chat.pk, first.parent_id]), {"text": "Q1 edited"},
                       HTTP_HX_REQUEST="true")
    assert edit.status_code == 200 and "Q1 edited" in edit.content.decode() and "3/3" in edit.content.decode()
    assert second.pk in [a.pk for a in _turns(alice_chat)[0].versions]


@integration
@pytest.mark.slow
def test_each_version_is_billed_once(fake_provider, celery_worker, alice_chat, chat_redis):
    owner, texts = alice_chat.owner, ["One two three", "Four five", "Six"]
    fake_provider.scenario(KIMI, {"text": texts[0], "delay_ms": 5})
    versions = [wait_finished(services.message_send(conversation=alice_chat, author=owner, text="What is a kiwi?").pk)]
    for text in texts[1:]:
        fake_provider.scenario(KIMI, {"text": text, "delay_ms": 5})
        retried = services.message_retry(message=Message.objects.select_related("conversation__tenant__plan", "parent")
                                         .get(pk=versions[-1].pk), author=owner)
        versions.append(wait_finished(retried.pk))
    assert [v.content for v in versions] == texts and all(v.status == "done" for v in versions)
    rows = {r.key: r for r in UsageRecord.objects.filter(source="chat")}
    assert sorted(rows) == sorted(f"chat:{v.pk}" for v in versions)  # one row per version, no more
    for version, text in zip(versions, texts, strict=True):
        # By hand: the question's 4 words + 1 per message in, the answer's words out, at Kimi's prices.
        usage = Usage(input_tokens=5, output_tokens=len(text.split()))
        assert (version.input_tokens, version.output_tokens) == (5, len(text.split()))
        assert version.cost == price_usage(prices=KIMI_PRICES, usage=usage)
        assert version.cost == Decimal(5 * 0.6 + len(text.split()) * 3).scaleb(-6).quantize(Decimal("1e-10"))
        assert rows[f"chat:{version.pk}"].billed == version.billed
    cost = selectors.conversation_cost(tenant=alice_chat.tenant, user=owner, conversation=alice_chat)
    assert cost == sum(v.billed for v in versions) > 0
