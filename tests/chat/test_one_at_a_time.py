"""One answer at a time: a conversation with an unfinished answer refuses another turn with 409, in the chat UI
and the REST API alike, and two sends racing into one conversation make exactly one turn."""

import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from conversations import services
from conversations.models import Message
from tests.factories import make_api_key

from .conftest import integration


def _post_send(client, conversation, text):
    return client.post(reverse("conversations:send", args=[conversation.pk]), {"text": text}, HTTP_HX_REQUEST="true")


@pytest.mark.django_db
def test_a_second_send_while_the_answer_runs_is_409_with_a_message(client, alice, alice_chat, chat_redis):
    client.force_login(alice)
    assert _post_send(client, alice_chat, "first").status_code == 200
    second = _post_send(client, alice_chat, "second")
    assert second.status_code == 409
    assert "Wait for the answer to finish, or stop it" in second.content.decode()
    assert second["HX-Retarget"] == "#composer-error"
    assert list(Message.objects.values_list("role", "content")) == [("user", "first"), ("assistant", "")]


@pytest.mark.django_db
def test_after_the_answer_ends_the_next_send_goes_through(client, alice, alice_chat, chat_redis):
    client.force_login(alice)
    _post_send(client, alice_chat, "first")
    Message.objects.filter(role="assistant").update(status="done", content="ok")
    assert _post_send(client, alice_chat, "second").status_code == 200
    assert Message.objects.filter(role="assistant", status="queued").count() == 1


@pytest.mark.django_db
def test_a_retry_while_another_answer_runs_is_409(client, alice, alice_chat, chat_redis):
    client.force_login(alice)
    _post_send(client, alice_chat, "first")
    first = Message.objects.get(role="assistant")
    Message.objects.filter(pk=first.pk).update(status="done", content="ok")
    _post_send(client, alice_chat, "second")
    retry = client.post(reverse("conversations:retry", args=[alice_chat.pk, first.pk]), HTTP_HX_REQUEST="true")
    assert retry.status_code == 409
    assert Message.objects.filter(role="assistant").count() == 2


@pytest.mark.django_db
def test_the_rest_api_refuses_a_second_turn_with_409(alice, acme, alice_chat, chat_redis):
    _key, secret = make_api_key(tenant=acme, user=alice)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    url = f"/api/conversations/{alice_chat.pk}/messages/"
    assert api.post(url, {"text": "first"}, content_type="application/json").status_code == 202
    second = api.post(url, {"text": "second"}, content_type="application/json")
    assert second.status_code == 409
    assert "Wait for the answer to finish" in second.json()["detail"]
    assert Message.objects.filter(role="assistant").count() == 1


@integration
def test_two_simultaneous_sends_make_exactly_one_turn(alice, alice_chat, chat_redis, monkeypatch):
    monkeypatch.setattr(services, "enqueue", lambda message_id: None)  # no worker here: the turn stays queued
    services.message_send(conversation=alice_chat, author=alice, text="warm up")  # catalog and spend loaded
    Message.objects.filter(role="assistant").update(status="done", content="ok")
    for _round in range(5):
        barrier, outcomes = threading.Barrier(2), []

        def send(text, barrier=barrier, outcomes=outcomes):
            try:
                barrier.wait()
                outcomes.append(services.message_send(conversation=alice_chat, author=alice, text=text).pk)
            except services.TurnInProgress:
                outcomes.append("409")
            finally:
                connection.close()

        threads = [threading.Thread(target=send, args=(f"racer {i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert len(outcomes) == 2 and outcomes.count("409") == 1, outcomes
        running = Message.objects.filter(role="assistant", status="queued")
        assert running.count() == 1
        # The refused send left no question behind: every question has its answer.
        assert Message.objects.filter(role="user").count() == Message.objects.filter(role="assistant").count()
        running.update(status="done", content="ok")
