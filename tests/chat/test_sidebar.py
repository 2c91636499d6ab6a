"""The conversation list: grouped by date, paged past 100, rename and delete from the list."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from conversations import services
from conversations.models import Conversation
from conversations.sidebar import PAGE_SIZE, date_group

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_alice(client, alice):
    client.force_login(alice)
    return client


def _aged(tenant, owner, title, days):
    conversation = services.conversation_create(tenant=tenant, owner=owner, title=title)
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now() - datetime.timedelta(days=days))
    return conversation


def test_date_groups_by_local_day():
    now = timezone.localtime()
    today = now.date()
    assert date_group(now, today) == "Today"
    assert date_group(now - datetime.timedelta(days=1), today) == "Yesterday"
    assert date_group(now - datetime.timedelta(days=7), today) == "Previous 7 days"
    assert date_group(now - datetime.timedelta(days=8), today) == "Older"


def test_the_list_is_grouped_by_date_in_order(as_alice, alice, acme):
    for title, days in [("ancient", 40), ("last week", 4), ("yesterday's", 1), ("today's", 0)]:
        _aged(acme, alice, title, days)
    html = as_alice.get(reverse("conversations:home")).content.decode()
    order = [html.index(text) for text in ("<h2>Today</h2>", "today&#x27;s", "<h2>Yesterday</h2>", "yesterday&#x27;s",
                                           "<h2>Previous 7 days</h2>", "last week", "<h2>Older</h2>", "ancient")]
    assert order == sorted(order)


def test_past_100_conversations_the_list_pages(as_alice, alice, acme, django_assert_max_num_queries):
    Conversation.objects.bulk_create([Conversation(tenant=acme, owner=alice, title=f"chat {i:03}")
                                      for i in range(PAGE_SIZE + 5)])
    Conversation.objects.update(updated_at=timezone.now() - datetime.timedelta(days=30))
    first = as_alice.get(reverse("conversations:home")).content.decode()
    assert first.count('class="chat-list-item"') == PAGE_SIZE
    assert 'data-testid="list-more"' in first and "page=2" in first
    with django_assert_max_num_queries(8):
        more = as_alice.get(reverse("conversations:sidebar"), {"page": 2}).content.decode()
    assert more.count('class="chat-list-item"') == 5
    assert "<h2>" not in more  # still "Older": no second heading
    assert 'data-testid="list-more"' not in more
    shown = set()
    for html in (first, more):
        shown |= {line for line in html.split() if line.startswith('id="chat-list-item-')}
    assert len(shown) == PAGE_SIZE + 5


def test_rename_from_the_list_updates_the_entry(as_alice, alice_chat):
    response = as_alice.post(reverse("conversations:rename", args=[alice_chat.pk]),
                             {"title": "From the list", "from": "list"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert f'<span id="chat-list-title-{alice_chat.pk}" class="chat-list-title" hx-swap-oob="true">From the list' in html
    assert 'id="conv-title" class="conv-title" hx-swap-oob' not in html  # not the open conversation
    alice_chat.refresh_from_db()
    assert alice_chat.title == "From the list"


def test_delete_from_the_list_removes_the_entry_only(as_alice, alice, acme, alice_chat, chat_redis):
    other = services.conversation_create(tenant=acme, owner=alice, title="other")
    response = as_alice.post(reverse("conversations:delete", args=[other.pk]), {"from": "list"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and response.content == b""
    assert list(Conversation.objects.values_list("pk", flat=True)) == [alice_chat.pk]
    current = as_alice.post(reverse("conversations:delete", args=[alice_chat.pk]), {"from": "list", "current": "1"},
                            HTTP_HX_REQUEST="true")
    assert current["HX-Redirect"] == "/chat/"
    assert not Conversation.objects.exists()
