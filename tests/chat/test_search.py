"""Search over message text: full-text, on the GIN index, scoped to the user's own conversations in the current
tenant (another member's or another tenant's messages never appear), snippets escaped with only the hits marked."""

import pytest
from django.db import connection
from django.urls import reverse

from conversations import services
from conversations.models import Message
from conversations.search import message_search, snippet_html

pytestmark = pytest.mark.django_db


def _say(conversation, text, role="user"):
    return Message.objects.create(tenant=conversation.tenant, conversation=conversation, role=role, content=text)


@pytest.fixture
def chats(acme, globex, alice, carol, bob):
    from tests.factories import MembershipFactory

    MembershipFactory(user=alice, tenant=globex, role="member")  # alice is in both tenants
    mine = services.conversation_create(tenant=acme, owner=alice, title="Mine")
    _say(mine, "Where do kiwis nest at night?")
    _say(mine, "Kiwis nest in burrows.", role="assistant")
    _say(mine, "Unrelated question about taxes")
    carols = services.conversation_create(tenant=acme, owner=carol, title="Carol's")
    _say(carols, "kiwis nest secret of carol")
    mine_elsewhere = services.conversation_create(tenant=globex, owner=alice, title="Alice at Globex")
    _say(mine_elsewhere, "kiwis nest in globex too")
    bobs = services.conversation_create(tenant=globex, owner=bob, title="Bob's")
    _say(bobs, "kiwis nest bob")
    return {"mine": mine, "mine_elsewhere": mine_elsewhere}


def test_search_finds_my_messages_in_this_tenant_only(chats, acme, globex, alice, carol, bob):
    hits = message_search(tenant=acme, user=alice, query="kiwi nesting")  # stemmed: kiwis, nest
    assert [h.conversation_title for h in hits] == ["Mine", "Mine"]
    assert {h.role for h in hits} == {"user", "assistant"}
    text = " ".join(h.snippet for h in hits)
    assert "carol" not in text and "globex" not in text and "bob" not in text
    # The same user in the other tenant sees that tenant's conversation only.
    assert [h.conversation_title for h in message_search(tenant=globex, user=alice, query="kiwis")] == ["Alice at Globex"]
    # Another member of the same tenant, and a member of another tenant, never see alice's messages.
    assert [h.conversation_title for h in message_search(tenant=acme, user=carol, query="kiwis")] == ["Carol's"]
    assert [h.conversation_title for h in message_search(tenant=globex, user=bob, query="kiwis")] == ["Bob's"]
    assert message_search(tenant=acme, user=bob, query="kiwis") == []


def test_snippets_mark_the_hits_and_escape_the_text(chats, acme, alice):
    _say(chats["mine"], 'Tom & Jerry wrote <img src=x onerror=alert(1)> about platypuses')
    [hit] = message_search(tenant=acme, user=alice, query="platypus")
    assert "<img" not in hit.snippet and "&lt;img" in hit.snippet
    assert "<mark>platypuses</mark>" in hit.snippet
    assert hit.url == f"/chat/{chats['mine'].pk}/#msg-{hit.message_id}"
    # A marker a message carried itself cannot unbalance the tags.
    assert snippet_html("\ue000one") == "one" and snippet_html("<i>\ue000x\ue001</i>") == "&lt;i&gt;<mark>x</mark>&lt;/i&gt;"


def test_bad_queries_find_nothing_and_fail_nothing(chats, acme, alice):
    for query in ["", "   ", "!!!", "the", '"unclosed', "a & | !", "x" * 5000]:
        assert message_search(tenant=acme, user=alice, query=query) == []


def test_the_search_reads_the_stored_vector_on_the_gin_index(chats, acme, alice):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'msg_search'")
        [(indexdef,)] = cursor.fetchall()
    assert "USING gin (tenant_id, search_vector)" in indexdef
    # (Which plan Postgres picks depends on the table's size: bench/chat_search.py shows it at 1,000,000 rows.)
    row = Message.objects.filter(content="Kiwis nest in burrows.").values_list("search_vector", flat=True).get()
    assert "'burrow'" in row and "'kiwi'" in row  # computed by Postgres, stemmed


def test_the_sidebar_shows_message_hits_that_open_the_message(client, chats, alice):
    client.force_login(alice)
    html = client.get(reverse("conversations:sidebar"), {"q": "burrows"}).content.decode()
    assert 'data-testid="search-hits"' in html
    assert "<mark>burrows</mark>" in html
    hit = Message.objects.get(content="Kiwis nest in burrows.")  # (the one message with "burrows")
    assert f'href="/chat/{chats["mine"].pk}/#msg-{hit.pk}"' in html
