"""Pages, isolation and bad input. No worker here: a sent turn stays queued (on_commit never runs inside the
test transaction), which is all these tests need."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from billing.models import UsageRecord
from conversations import services
from conversations.models import Conversation, Message
from conversations.streams import cancel_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_alice(client, alice):
    client.force_login(alice)
    return client


def _client_for(user):
    c = Client()
    c.force_login(user)
    return c


def _send(client, conversation, text, **extra):
    return client.post(reverse("conversations:send", args=[conversation.pk]), {"text": text}, **extra)


# --- pages ---


def test_chat_home_lists_only_my_conversations(as_alice, alice_chat, carol, acme):
    services.conversation_create(tenant=acme, owner=carol, title="Carol's secret")
    page = as_alice.get("/chat/")
    assert page.status_code == 200
    assert "Alice&#x27;s plans" in page.content.decode()
    assert "Carol&#x27;s secret" not in page.content.decode()


def test_get_absolute_url_opens_the_conversation(as_alice, alice_chat):
    assert alice_chat.get_absolute_url() == f"/chat/{alice_chat.pk}/"
    page = as_alice.get(alice_chat.get_absolute_url())
    assert page.status_code == 200
    assert 'id="composer"' in page.content.decode()


def test_anonymous_is_sent_to_login(client, alice_chat):
    response = client.get(alice_chat.get_absolute_url())
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_a_new_chat_is_created_with_its_first_message_and_opened(as_alice, alice, chat_redis):
    response = as_alice.post(reverse("conversations:new"), {"text": "What is a kiwi?", "tier": "max"},
                             HTTP_HX_REQUEST="true")
    conversation = Conversation.objects.get(owner=alice)
    assert response["HX-Redirect"] == conversation.get_absolute_url()
    assert (conversation.tier, conversation.title) == ("max", "What is a kiwi?")
    assert list(conversation.messages.values_list("role", "status")) == [("user", "done"), ("assistant", "queued")]


def test_new_chat_pages_create_nothing_until_a_message_is_sent(as_alice, alice):
    for _ in range(6):
        page = as_alice.get(reverse("conversations:home"))
        assert 'id="composer"' in page.content.decode()
        assert "autofocus" in page.content.decode()  # the message box is focused on a new chat
    assert not Conversation.objects.exists()


@pytest.mark.parametrize(("data", "error"), [
    ({"text": "   "}, "Type a message first."),
    ({"text": "hi", "tier": "gold"}, "Choose a tier: Auto or MAX."),
], ids=["empty", "bad-tier"])
def test_a_refused_first_message_leaves_no_conversation(as_alice, chat_redis, data, error):
    response = as_alice.post(reverse("conversations:new"), data, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert error in response.content.decode()
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_a_first_message_over_budget_leaves_no_conversation(as_alice, acme, chat_redis):
    acme.plan.monthly_cap = Decimal("0")
    acme.plan.save()
    response = as_alice.post(reverse("conversations:new"), {"text": "hello"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_max_first_message_on_free_plan_is_refused(bob, chat_redis):
    client = _client_for(bob)
    response = client.post(reverse("conversations:new"), {"text": "hi", "tier": "max"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "MAX is not part of the Free plan" in response.content.decode()
    assert not Conversation.objects.exists()


def test_search_filters_the_sidebar_by_title(as_alice, alice, acme):
    services.conversation_create(tenant=acme, owner=alice, title="Kiwi recipes")
    services.conversation_create(tenant=acme, owner=alice, title="Tax questions")
    html = as_alice.get(reverse("conversations:sidebar"), {"q": "kiwi"}).content.decode()
    assert "Kiwi recipes" in html and "Tax questions" not in html
    html = as_alice.get(reverse("conversations:sidebar"), {"q": "zzz"}).content.decode()
    assert "No conversation title matches" in html


def test_rename_changes_the_title(as_alice, alice_chat):
    response = as_alice.post(reverse("conversations:rename", args=[alice_chat.pk]), {"title": "  Trip   to Rome "},
                             HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    alice_chat.refresh_from_db()
    assert alice_chat.title == "Trip to Rome"


def test_rename_to_blank_is_refused(as_alice, alice_chat):
    response = as_alice.post(reverse("conversations:rename", args=[alice_chat.pk]), {"title": "   "})
    assert response.status_code == 422
    assert "cannot be empty" in response.content.decode()
    alice_chat.refresh_from_db()
    assert alice_chat.title == "Alice's plans"


def test_delete_removes_conversation_and_messages(as_alice, alice_chat, chat_redis):
    _send(as_alice, alice_chat, "hello")
    response = as_alice.post(reverse("conversations:delete", args=[alice_chat.pk]))
    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=alice_chat.pk).exists()
    assert not Message.objects.filter(conversation_id=alice_chat.pk).exists()


def test_tier_switch_is_persisted_at_once(as_alice, alice_chat):
    response = as_alice.post(reverse("conversations:tier", args=[alice_chat.pk]), {"tier": "max"},
                             HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    alice_chat.refresh_from_db()
    assert alice_chat.tier == "max"


def test_free_plan_sees_max_disabled_and_cannot_switch(bob, globex):
    client = _client_for(bob)
    conversation = services.conversation_create(tenant=globex, owner=bob)
    html = client.get(conversation.get_absolute_url()).content.decode()
    assert 'value="max" disabled' in html
    assert "MAX is not part of the Free plan — ask your admin to upgrade." in html
    response = client.post(reverse("conversations:tier", args=[conversation.pk]), {"tier": "max"})
    assert response.status_code == 422
    assert "MAX is not part of the Free plan — ask your admin to upgrade." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.tier == "auto"


# --- sending ---


def test_send_saves_question_and_queued_answer(as_alice, alice_chat, chat_redis):
    response = _send(as_alice, alice_chat, "  What is a kiwi?  ", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    question, answer = Message.objects.filter(conversation=alice_chat).order_by("id")
    assert (question.role, question.content) == ("user", "What is a kiwi?")
    assert (answer.role, answer.status, answer.parent_id, answer.tier) == ("assistant", "queued", question.pk, "auto")
    html = response.content.decode()
    assert f'sse-connect="/chat/{alice_chat.pk}/messages/{answer.pk}/stream/?t=' in html


def test_first_message_names_an_untitled_conversation(as_alice, alice, acme, chat_redis):
    conversation = services.conversation_create(tenant=acme, owner=alice)
    assert conversation.title == "New chat"
    response = _send(as_alice, conversation, "What is a kiwi?", HTTP_HX_REQUEST="true")
    conversation.refresh_from_db()
    assert conversation.title == "What is a kiwi?"
    # The page's sidebar entry gets the new title too (an out-of-band swap).
    assert f'id="chat-list-title-{conversation.pk}" class="chat-list-title" hx-swap-oob="true">What is a kiwi?' in (
        response.content.decode())


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "Type a message first."),
        ("   \n\t  ", "Type a message first."),
        ("x" * 32_001, "the limit is 32,000"),
    ],
    ids=["empty", "whitespace", "too-long"],
)
def test_bad_message_is_refused_and_nothing_saved(as_alice, alice_chat, chat_redis, text, error):
    response = _send(as_alice, alice_chat, text, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#composer-error"
    assert error in response.content.decode()
    assert not Message.objects.exists()


def test_message_at_the_limit_is_accepted(as_alice, alice_chat, chat_redis):
    assert _send(as_alice, alice_chat, "x" * 32_000).status_code == 302
    assert Message.objects.count() == 2


def test_bad_tier_value_is_refused(as_alice, alice_chat):
    response = as_alice.post(reverse("conversations:tier", args=[alice_chat.pk]), {"tier": "turbo"})
    assert response.status_code == 422
    assert "Choose a tier: Auto or MAX." in response.content.decode()
    alice_chat.refresh_from_db()
    assert alice_chat.tier == "auto"


def test_post_without_csrf_token_is_forbidden(alice, alice_chat, chat_redis):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert _send(client, alice_chat, "hello").status_code == 403
    assert client.post(reverse("conversations:tier", args=[alice_chat.pk]), {"tier": "max"}).status_code == 403
    assert not Message.objects.exists()
    alice_chat.refresh_from_db()
    assert alice_chat.tier == "auto"


def test_max_on_free_plan_is_refused_with_reason(bob, globex, chat_redis):
    conversation = services.conversation_create(tenant=globex, owner=bob)
    Conversation.objects.filter(pk=conversation.pk).update(tier="max")  # e.g. the plan was downgraded since
    response = _send(_client_for(bob), conversation, "hi")
    assert response.status_code == 422
    assert "MAX is not part of the Free plan — ask your admin to upgrade." in response.content.decode()
    assert not Message.objects.exists()


def test_exhausted_budget_refuses_send_and_saves_nothing(as_alice, alice_chat, acme, chat_redis):
    plan = acme.plan
    plan.monthly_cap = 0
    plan.save()
    response = _send(as_alice, alice_chat, "hello")
    assert response.status_code == 422
    assert not Message.objects.exists()


# --- stop and retry ---


def test_stop_of_a_queued_turn_cancels_it_unbilled(as_alice, alice_chat, chat_redis):
    _send(as_alice, alice_chat, "hello")
    answer = Message.objects.get(role="assistant")
    response = as_alice.post(reverse("conversations:stop", args=[alice_chat.pk, answer.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    answer.refresh_from_db()
    assert answer.status == "cancelled"
    assert chat_redis.exists(cancel_key(answer.pk))
    assert not UsageRecord.objects.exists()


def test_retry_creates_a_new_answer_and_keeps_the_old(as_alice, alice_chat, chat_redis):
    _send(as_alice, alice_chat, "hello")
    old = Message.objects.get(role="assistant")
    Message.objects.filter(pk=old.pk).update(status="failed", error="boom")
    response = as_alice.post(reverse("conversations:retry", args=[alice_chat.pk, old.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    new = Message.objects.filter(role="assistant").exclude(pk=old.pk).get()
    assert (new.status, new.parent_id, new.retry_of_id) == ("queued", old.parent_id, old.pk)
    assert new.usage_key != old.usage_key
    old.refresh_from_db()
    assert (old.status, old.error) == ("failed", "boom")


def test_retry_of_a_running_turn_is_refused(as_alice, alice_chat, chat_redis):
    _send(as_alice, alice_chat, "hello")
    answer = Message.objects.get(role="assistant")
    response = as_alice.post(reverse("conversations:retry", args=[alice_chat.pk, answer.pk]))
    assert response.status_code == 409
    assert Message.objects.filter(role="assistant").count() == 1


# --- isolation: carol (same tenant) and bob (other tenant) get the same 404 as a missing id ---


def _alice_turn(as_alice, alice_chat):
    _send(as_alice, alice_chat, "private question")
    return Message.objects.get(conversation=alice_chat, role="assistant")


@pytest.mark.parametrize("intruder", ["carol", "bob"])
def test_intruders_get_404_everywhere(request, as_alice, alice_chat, chat_redis, intruder):
    answer = _alice_turn(as_alice, alice_chat)
    Message.objects.filter(pk=answer.pk).update(status="done", content="secret answer")
    client = _client_for(request.getfixturevalue(intruder))
    c, m = alice_chat.pk, answer.pk
    missing_c, missing_m = c + 10_000, m + 10_000
    checks = [
        ("get", reverse("conversations:detail", args=[c]), reverse("conversations:detail", args=[missing_c]), {}),
        ("post", reverse("conversations:rename", args=[c]), reverse("conversations:rename", args=[missing_c]),
         {"title": "pwned"}),
        ("post", reverse("conversations:delete", args=[c]), reverse("conversations:delete", args=[missing_c]), {}),
        ("post", reverse("conversations:tier", args=[c]), reverse("conversations:tier", args=[missing_c]),
         {"tier": "max"}),
        ("post", reverse("conversations:send", args=[c]), reverse("conversations:send", args=[missing_c]),
         {"text": "hi"}),
        ("post", reverse("conversations:stop", args=[c, m]), reverse("conversations:stop", args=[c, missing_m]), {}),
        ("post", reverse("conversations:retry", args=[c, m]), reverse("conversations:retry", args=[c, missing_m]),
         {}),
        ("get", reverse("conversations:stream", args=[c, m]), reverse("conversations:stream", args=[c, missing_m]),
         {}),
    ]
    for method, url, missing_url, data in checks:
        theirs = getattr(client, method)(url, data)
        missing = getattr(client, method)(missing_url, data)
        assert theirs.status_code == 404, url
        assert missing.status_code == 404, missing_url
        assert theirs.content == missing.content, url
    alice_chat.refresh_from_db()
    assert (alice_chat.title, alice_chat.tier) == ("Alice's plans", "auto")
    assert Message.objects.filter(conversation=alice_chat).count() == 2
    assert not chat_redis.exists(cancel_key(answer.pk))


def test_sidebar_search_never_shows_other_members_titles(as_alice, carol, acme):
    services.conversation_create(tenant=acme, owner=carol, title="Carol salary")
    html = as_alice.get(reverse("conversations:sidebar"), {"q": "salary"}).content.decode()
    assert "Carol salary" not in html


# --- query counts ---


def _fill(conversation, n):
    for i in range(n):
        q = Message.objects.create(tenant=conversation.tenant, conversation=conversation, role="user",
                                   content=f"question {i}")
        Message.objects.create(tenant=conversation.tenant, conversation=conversation, role="assistant",
                               content=f"**answer** {i}\n\n```py\nprint({i})\n```", status="done", parent=q,
                               tier="auto", upstream_model="kimi-k2.5", input_tokens=10, output_tokens=20,
                               fallback_count=i % 2, attempts=[{"endpoint": "a", "outcome": "error"}])


@pytest.mark.parametrize("n", [1, 40])
def test_conversation_page_queries_are_bounded(as_alice, alice, acme, alice_chat, django_assert_max_num_queries, n):
    _fill(alice_chat, n)
    for i in range(n):
        services.conversation_create(tenant=acme, owner=alice, title=f"other {i}")
    as_alice.get(alice_chat.get_absolute_url())  # warm the session
    with django_assert_max_num_queries(12):
        page = as_alice.get(alice_chat.get_absolute_url())
    assert page.content.decode().count('class="msg msg-assistant"') == n


@pytest.mark.parametrize("n", [1, 40])
def test_sidebar_queries_are_bounded(as_alice, alice, acme, django_assert_max_num_queries, n):
    for i in range(n):
        services.conversation_create(tenant=acme, owner=alice, title=f"chat {i}")
    as_alice.get(reverse("conversations:sidebar"))
    with django_assert_max_num_queries(8):
        html = as_alice.get(reverse("conversations:sidebar")).content.decode()
    assert html.count('class="chat-list-item"') == n


def test_a_send_while_redis_is_down_is_refused_clearly_and_saves_nothing(alice, alice_chat, acme, settings):
    import socket

    from conversations import services

    plan = acme.plan
    plan.monthly_cap = Decimal("100")  # the hold then needs Redis
    plan.save()
    with socket.socket() as sock:  # a port nothing listens on: Redis is down
        sock.bind(("127.0.0.1", 0))
        settings.REDIS_URL = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    with pytest.raises(services.ChatRefused, match="unavailable for a moment"):
        services.message_send(conversation=alice_chat, author=alice, text="hello")
    assert not Message.objects.exists()
