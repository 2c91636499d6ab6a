"""The REST API under /api/: key or session auth, scoping to tenant and user, isolation, the Celery path."""

import pytest
from rest_framework.test import APIClient

from billing.months import month_start
from billing.services import invoice_rollup
from conversations import services as chat
from tenants.services import api_key_revoke, tenant_set_status
from tests.billing.conftest import record_usage
from tests.chat.conftest import celery_worker, chat_redis, chat_settings, wait_finished  # noqa: F401, F811
from tests.factories import MembershipFactory, make_api_key


@pytest.fixture(autouse=True)
def _plain_http(settings):
    settings.SECURE_SSL_REDIRECT = False


def _client(secret=None):
    client = APIClient()
    if secret:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def keys(db, alice, carol, bob, acme, globex, redis_client):
    from proxy.auth import key_cache_clear

    key_cache_clear()
    return {
        "alice": make_api_key(tenant=acme, user=alice)[1],
        "carol": make_api_key(tenant=acme, user=carol)[1],
        "bob": make_api_key(tenant=globex, user=bob)[1],
    }


@pytest.fixture
def alice_chat(alice, acme):
    return chat.conversation_create(tenant=acme, owner=alice, title="Alice's plans")


def test_no_key_or_a_wrong_key_is_401(keys):
    assert _client().get("/api/conversations/").status_code in (401, 403)
    response = _client("kc-wrong").get("/api/conversations/")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")


def test_key_lists_only_its_creators_conversations(keys, alice_chat, carol, acme):
    chat.conversation_create(tenant=acme, owner=carol, title="Carol's")
    body = _client(keys["alice"]).get("/api/conversations/").json()
    assert [c["title"] for c in body["results"]] == ["Alice's plans"]


def test_session_auth_works_too(keys, alice, alice_chat):
    client = APIClient()
    client.force_login(alice)
    assert client.get("/api/conversations/").json()["count"] == 1


def test_create_conversation_and_read_it(keys):
    client = _client(keys["alice"])
    created = client.post("/api/conversations/", {"title": "From the API", "tier": "max"}, format="json")
    assert created.status_code == 201 and created.json()["tier"] == "max"
    got = client.get(f"/api/conversations/{created.json()['id']}/")
    assert got.status_code == 200 and got.json()["title"] == "From the API"


def test_bad_input_is_400_and_creates_nothing(keys):
    from conversations.models import Conversation

    response = _client(keys["alice"]).post("/api/conversations/", {"tier": "ultra"}, format="json")
    assert response.status_code == 400 and "tier" in response.json()
    assert Conversation.objects.count() == 0


def test_carols_key_cannot_read_alices_conversation_or_messages(keys, alice_chat):
    client = _client(keys["carol"])
    assert client.get(f"/api/conversations/{alice_chat.pk}/").status_code == 404
    assert client.get(f"/api/conversations/{alice_chat.pk}/messages/").status_code == 404
    assert client.post(f"/api/conversations/{alice_chat.pk}/messages/", {"text": "hi"},
                       format="json").status_code == 404
    assert client.get("/api/conversations/").json()["count"] == 0


def test_globex_key_cannot_read_acme_conversations_messages_usage_or_invoices(keys, alice_chat, acme, globex, bob):
    from conversations.models import Message

    question = Message.objects.create(tenant=acme, conversation=alice_chat, role="user", content="secret")
    record_usage(acme, output_tokens=999)
    invoice_rollup(month=month_start(), tenant=acme)
    from billing.models import Invoice

    acme_invoice = Invoice.objects.get(tenant=acme)
    MembershipFactory._meta.model.objects.filter(user=bob, tenant=globex).update(role="admin")
    client = _client(keys["bob"])
    assert client.get(f"/api/conversations/{alice_chat.pk}/").status_code == 404
    assert client.get(f"/api/conversations/{alice_chat.pk}/messages/").status_code == 404
    assert client.get(f"/api/messages/{question.pk}/").status_code == 404
    assert client.get(f"/api/invoices/{acme_invoice.pk}/").status_code == 404
    assert client.get("/api/invoices/").json()["count"] == 0
    usage = client.get("/api/usage/").json()
    assert usage["totals"]["requests"] == 0 and usage["by_model"] == []


def test_admin_sees_usage_and_invoices_a_member_does_not(keys, acme):
    record_usage(acme, output_tokens=500)
    invoice_rollup(month=month_start(), tenant=acme)
    admin = _client(keys["alice"])
    usage = admin.get("/api/usage/").json()
    assert usage["totals"]["requests"] == 1 and usage["by_model"][0]["endpoint_slug"] == "kimi-k2.5"
    invoices = admin.get("/api/invoices/").json()["results"]
    assert len(invoices) == 1
    detail = admin.get(f"/api/invoices/{invoices[0]['id']}/").json()
    assert detail["lines"][0]["endpoint_slug"] == "kimi-k2.5"
    member = _client(keys["carol"])
    assert member.get("/api/usage/").status_code == 403
    assert member.get("/api/invoices/").status_code == 403


def test_bad_month_is_400(keys):
    assert _client(keys["alice"]).get("/api/usage/?month=2026-13").status_code == 400


def test_revoked_key_is_401_at_once(keys, alice, acme, django_capture_on_commit_callbacks):
    key, secret = make_api_key(tenant=acme, user=alice, name="short-lived")
    client = _client(secret)
    assert client.get("/api/conversations/").status_code == 200  # now cached in this process
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(api_key=key, actor=alice)
    assert client.get("/api/conversations/").status_code == 401


def test_removed_members_key_stops_working(keys, acme, carol):
    from tenants.models import Membership

    Membership.objects.filter(user=carol, tenant=acme).delete()
    assert _client(keys["carol"]).get("/api/conversations/").status_code == 401


def test_suspended_tenant_key_is_403(keys, acme, alice):
    tenant_set_status(tenant=acme, status="suspended", actor=alice)
    response = _client(keys["alice"]).get("/api/conversations/")
    assert response.status_code == 403 and "suspended" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_send_a_message_through_celery_and_read_the_answer(live_db, fake_provider, celery_worker, alice, acme):  # noqa: F811
    secret = make_api_key(tenant=acme, user=alice)[1]
    client = _client(secret)
    conversation = client.post("/api/conversations/", {"title": "Queued"}, format="json").json()
    sent = client.post(f"/api/conversations/{conversation['id']}/messages/", {"text": "hello worker"},
                       format="json")
    assert sent.status_code == 202
    answer = sent.json()
    assert answer["role"] == "assistant" and answer["status"] == "queued"
    wait_finished(answer["id"])
    done = client.get(f"/api/messages/{answer['id']}/").json()
    assert done["status"] == "done" and done["endpoint"] == "kimi-k2.5"
    assert done["content"].startswith("Echo from kimi-k2.5: hello worker")
    listed = client.get(f"/api/conversations/{conversation['id']}/messages/").json()["results"]
    assert [m["role"] for m in listed] == ["user", "assistant"]


def test_refused_send_is_409_and_saves_nothing(keys, bob, globex):
    from conversations.models import Message

    conversation = chat.conversation_create(tenant=globex, owner=bob)
    conversation.tier = "max"  # Free has no MAX: the service refuses
    conversation.save()
    response = _client(keys["bob"]).post(f"/api/conversations/{conversation.pk}/messages/", {"text": "hi"},
                                         format="json")
    assert response.status_code == 409 and "MAX" in response.json()["detail"]
    assert Message.objects.count() == 0


def test_usage_summary_filters_by_end_user_within_the_tenant(keys, acme, globex):
    record_usage(acme, source="api", input_tokens=1111, end_user="cust-1")
    record_usage(acme, source="api", input_tokens=2222, end_user="cust-2")
    record_usage(globex, source="api", input_tokens=9999, end_user="cust-1")
    admin = _client(keys["alice"])
    usage = admin.get("/api/usage/", {"end_user": "cust-1"}).json()
    assert usage["end_user"] == "cust-1"
    assert (usage["totals"]["requests"], usage["totals"]["input_tokens"]) == (1, 1111)
    assert admin.get("/api/usage/").json()["totals"]["input_tokens"] == 3333
    assert admin.get("/api/usage/", {"end_user": "cust-9"}).json()["totals"]["requests"] == 0
    assert admin.get("/api/usage/", {"end_user": "x" * 257}).status_code == 400
