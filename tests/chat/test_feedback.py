"""Thumbs up / down on an answer: set, switch, clear; nobody but the conversation's owner can rate; only a
finished answer a model wrote can be rated; staff see satisfaction per model and per smart Auto decision."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse

from conversations import feedback, services
from conversations.models import Message
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MISSING_ID = 2_000_000_000


def _client_for(user):
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def as_alice(alice):
    return _client_for(alice)


def _turn(conversation, *, status="done", **fields) -> Message:
    """A question and its answer, as a finished turn stores them."""
    tenant = conversation.tenant
    question = Message.objects.create(tenant=tenant, conversation=conversation, role="user", content="question")
    answer = {"tier": "auto", "endpoint": "kimi-k2.5", "provider": "moonshot", "upstream_model": "kimi-k2.5",
              "content": "answer", **fields}
    return Message.objects.create(tenant=tenant, conversation=conversation, role="assistant", parent=question,
                                  status=status, **answer)


@pytest.fixture
def answer(alice_chat):
    return _turn(alice_chat)


def _url(message, conversation_id=None, message_id=None):
    return reverse("conversations:feedback", args=[conversation_id or message.conversation_id,
                                                   message_id or message.pk])


def _rate(client, message, value, **kwargs):
    return client.post(_url(message, **kwargs), {"value": value}, HTTP_HX_REQUEST="true")


def _state(message):
    return Message.objects.filter(pk=message.pk).values("feedback", "feedback_at").get()


def _pressed(html: str) -> dict[str, str]:
    """{"up": "true"|"false", "down": ...} from the buttons' partial."""
    return {kind: re.search(rf'aria-pressed="(\w+)"[^>]*data-testid="feedback-{kind}"', html)[1]
            for kind in ("up", "down")}


# --- set, switch, clear ---


def test_thumbs_up_stores_it_and_shows_the_button_pressed(as_alice, answer):
    response = _rate(as_alice, answer, "up")
    assert response.status_code == 200
    html = response.content.decode()
    assert _pressed(html) == {"up": "true", "down": "false"}
    assert 'aria-label="Good answer"' in html and 'aria-label="Bad answer"' in html
    state = _state(answer)
    assert state["feedback"] == 1 and state["feedback_at"] is not None


def test_the_pressed_button_posts_clear_and_the_other_switches(as_alice, answer):
    html = _rate(as_alice, answer, "up").content.decode()
    assert re.search(r'value="clear"\s+aria-pressed="true" aria-label="Good answer"', html)
    assert re.search(r'value="down"\s+aria-pressed="false" aria-label="Bad answer"', html)


def test_switching_from_up_to_down(as_alice, answer):
    _rate(as_alice, answer, "up")
    response = _rate(as_alice, answer, "down")
    assert _pressed(response.content.decode()) == {"up": "false", "down": "true"}
    assert _state(answer)["feedback"] == -1


def test_clearing_removes_the_rating(as_alice, answer):
    _rate(as_alice, answer, "down")
    response = _rate(as_alice, answer, "clear")
    assert _pressed(response.content.decode()) == {"up": "false", "down": "false"}
    assert _state(answer) == {"feedback": None, "feedback_at": None}


def test_without_htmx_the_form_post_returns_to_the_answer(as_alice, answer):
    response = as_alice.post(_url(answer), {"value": "up"})
    assert response.status_code == 302
    assert response["Location"] == f"{answer.conversation.get_absolute_url()}#msg-{answer.pk}"
    assert _state(answer)["feedback"] == 1


def test_the_page_shows_the_stored_rating(as_alice, answer):
    Message.objects.filter(pk=answer.pk).update(feedback=-1)
    html = as_alice.get(answer.conversation.get_absolute_url()).content.decode()
    assert _pressed(html) == {"up": "false", "down": "true"}


# --- isolation ---


@pytest.mark.parametrize("intruder", ["carol", "bob"])
def test_nobody_else_can_rate_alices_answer(request, answer, intruder):
    """Carol (same tenant) and Bob (another tenant) get the missing-id answer; the rating stays alice's."""
    Message.objects.filter(pk=answer.pk).update(feedback=1)
    before = _state(answer)
    client = _client_for(request.getfixturevalue(intruder))
    theirs = _rate(client, answer, "down")
    missing = _rate(client, answer, "down", message_id=MISSING_ID)
    missing_conversation = _rate(client, answer, "down", conversation_id=MISSING_ID)
    assert theirs.status_code == missing.status_code == missing_conversation.status_code == 404
    assert theirs.content == missing.content
    assert _state(answer) == before


def test_an_answer_is_rated_only_under_its_own_conversation(as_alice, alice, acme, answer):
    other = services.conversation_create(tenant=acme, owner=alice)
    assert _rate(as_alice, answer, "up", conversation_id=other.pk).status_code == 404
    assert _state(answer)["feedback"] is None


def test_anonymous_is_sent_to_login(client, answer):
    response = client.post(_url(answer), {"value": "up"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert _state(answer)["feedback"] is None


def test_get_is_not_allowed(as_alice, answer):
    assert as_alice.get(_url(answer)).status_code == 405


# --- what can be rated, and with what ---


def test_a_question_cannot_be_rated(as_alice, answer):
    response = _rate(as_alice, answer.parent, "up")
    assert response.status_code == 400
    assert response.content.decode() == "Only an answer can be rated."
    assert _state(answer.parent)["feedback"] is None


@pytest.mark.parametrize("status", ["queued", "streaming"])
def test_an_unfinished_answer_cannot_be_rated(as_alice, alice_chat, status):
    running = _turn(alice_chat, status=status, endpoint="", content="")
    response = _rate(as_alice, running, "up")
    assert response.status_code == 400
    assert "still being generated" in response.content.decode()
    assert _state(running)["feedback"] is None


def test_a_turn_no_model_answered_cannot_be_rated_and_shows_no_buttons(as_alice, alice_chat):
    failed = _turn(alice_chat, status="failed", endpoint="", provider="", upstream_model="", content="",
                   error="All models failed.")
    assert _rate(as_alice, failed, "down").status_code == 400
    assert _state(failed)["feedback"] is None
    html = as_alice.get(alice_chat.get_absolute_url()).content.decode()
    assert f'id="msg-{failed.pk}-feedback"' not in html


def test_a_stopped_answer_with_text_can_be_rated(as_alice, alice_chat):
    stopped = _turn(alice_chat, status="cancelled", content="half an ans")
    assert _rate(as_alice, stopped, "down").status_code == 200
    assert _state(stopped)["feedback"] == -1


@pytest.mark.parametrize("value", ["", "1", "-1", "2", "UP", "sideways"])
def test_a_bad_value_is_400_and_changes_nothing(as_alice, answer, value):
    Message.objects.filter(pk=answer.pk).update(feedback=1)
    before = _state(answer)
    response = _rate(as_alice, answer, value)
    assert response.status_code == 400
    assert _state(answer) == before


def test_the_service_refuses_a_value_other_than_up_down_or_none(answer):
    with pytest.raises(feedback.FeedbackRefused):
        feedback.message_feedback_set(message=answer, value=2)
    assert _state(answer)["feedback"] is None


def test_the_database_refuses_any_other_value(answer):
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.filter(pk=answer.pk).update(feedback=5)


def test_a_retry_keeps_the_old_answers_rating(as_alice, answer, chat_redis):
    _rate(as_alice, answer, "down")
    services.message_retry(message=Message.objects.select_related("conversation__tenant__plan").get(pk=answer.pk),
                           author=answer.conversation.owner)
    assert _state(answer)["feedback"] == -1


# --- staff: satisfaction per model and per decision, all tenants ---


@pytest.fixture
def staff_user(db):
    user = UserFactory(email="ops@kiwiclaw.test", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="manage_tenants", content_type__app_label="tenants"))
    return user


@pytest.fixture
def rated(alice, carol, bob, acme, globex):
    """Answers across two tenants and three members. Hand-counted:

    per endpoint:  claude-opus-4-6  up 2 down 1 (rated 3)   kimi-k2.5  up 2 down 2 (rated 4)
                   claude-haiku-4-5 up 0 down 1 (rated 1)
    per decision:  escalated up 2 down 0 (2)   stayed up 1 down 2 (3)   unscored up 1 down 2 (3)
    Unrated answers, questions and an unfinished answer count nowhere."""
    chats = {
        "alice": services.conversation_create(tenant=acme, owner=alice),
        "carol": services.conversation_create(tenant=acme, owner=carol),
        "bob": services.conversation_create(tenant=globex, owner=bob),
    }
    escalated = {"tier": "max", "endpoint": "claude-opus-4-6", "route_score": 0.8, "route_threshold": 0.2,
                 "route_escalated": True}
    stayed = {"route_score": 0.1, "route_threshold": 0.2, "route_escalated": False}
    on_max = {"tier": "max", "endpoint": "claude-opus-4-6"}
    rows = [
        ("alice", escalated, 1), ("carol", escalated, 1),
        ("alice", stayed, 1), ("bob", stayed, -1), ("bob", {**stayed, "endpoint": "claude-haiku-4-5"}, -1),
        ("alice", on_max, -1), ("carol", {}, 1), ("bob", {}, -1),
        ("alice", escalated, None), ("carol", stayed, None), ("bob", {}, None),  # not rated
    ]
    for owner, fields, value in rows:
        _turn(chats[owner], feedback=value, **fields)
    _turn(chats["alice"], status="streaming", endpoint="", content="")
    return chats


def _cells(html: str, table: str) -> dict[str, dict[str, str]]:
    body = re.search(rf'data-table="{table}".*?</table>', html, re.S)[0]
    rows = {}
    for key, row in re.findall(r'<tr data-(?:endpoint|decision)="([^"]*)">(.*?)</tr>', body, re.S):
        rows[key] = dict(re.findall(r'data-col="(\w+)">([^<]*)<', row))
    return rows


def test_staff_satisfaction_numbers_match_the_hand_count(staff_user, rated, django_assert_max_num_queries):
    client = _client_for(staff_user)
    client.get(reverse("conversations:staff_feedback"), HTTP_HX_REQUEST="true")  # warm the session
    # The user, the membership, the permissions (user and group), and one GROUP BY per table.
    with django_assert_max_num_queries(6):
        response = client.get(reverse("conversations:staff_feedback"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html  # the fragment alone, for /staff/routing/
    assert _cells(html, "feedback-by-endpoint") == {
        "kimi-k2.5": {"up": "2", "down": "2", "share_up": "50%", "rated": "4"},
        "claude-opus-4-6": {"up": "2", "down": "1", "share_up": "67%", "rated": "3"},
        "claude-haiku-4-5": {"up": "0", "down": "1", "share_up": "0%", "rated": "1"},
    }
    assert list(_cells(html, "feedback-by-endpoint")) == ["kimi-k2.5", "claude-opus-4-6", "claude-haiku-4-5"]
    by_decision = _cells(html, "feedback-by-decision")
    assert by_decision == {
        "escalated": {"up": "2", "down": "0", "share_up": "100%", "rated": "2"},
        "stayed": {"up": "1", "down": "2", "share_up": "33%", "rated": "3"},
        "unscored": {"up": "1", "down": "2", "share_up": "33%", "rated": "3"},
    }
    assert list(by_decision) == ["escalated", "stayed", "unscored"]


def test_the_staff_selectors_aggregate_in_sql(rated, django_assert_num_queries):
    from conversations import selectors

    with django_assert_num_queries(1):
        rows = list(selectors.feedback_by_decision_all_tenants())
    assert rows[0] == {"decision": "escalated", "up": 2, "down": 0, "rated": 2, "share_up": 1.0}
    with django_assert_num_queries(1):
        rows = {r["endpoint"]: r for r in selectors.feedback_by_endpoint_all_tenants()}
    assert rows["claude-opus-4-6"]["share_up"] == pytest.approx(2 / 3)


def test_the_staff_page_without_htmx_is_a_full_page(staff_user, rated):
    html = _client_for(staff_user).get(reverse("conversations:staff_feedback")).content.decode()
    assert "<html" in html and "Answer satisfaction" in html and 'data-table="feedback-by-decision"' in html


def test_staff_satisfaction_with_nothing_rated(staff_user, alice_chat):
    _turn(alice_chat)
    html = _client_for(staff_user).get(reverse("conversations:staff_feedback"),
                                       HTTP_HX_REQUEST="true").content.decode()
    assert html.count("No answer has been rated yet.") == 2


@pytest.mark.parametrize("who", ["alice", "carol", "bob"])
def test_members_and_tenant_admins_get_403_on_staff_satisfaction(request, rated, who):
    client = _client_for(request.getfixturevalue(who))
    assert client.get(reverse("conversations:staff_feedback"), HTTP_HX_REQUEST="true").status_code == 403
    assert client.get(reverse("conversations:staff_feedback")).status_code == 403


def test_anonymous_is_sent_to_login_from_staff_satisfaction(client):
    response = client.get(reverse("conversations:staff_feedback"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_staff_routing_page_loads_satisfaction_with_htmx_and_links_to_it(staff_user):
    html = _client_for(staff_user).get("/staff/routing/").content.decode()
    url = reverse("conversations:staff_feedback")
    assert url == "/staff/routing/feedback/"
    assert f'hx-get="{url}" hx-trigger="load"' in html
    assert f'<a href="{url}">' in html
