"""The SSE fast path respects sessions: a stream token outlives what it proves (6 h), so before a stream opens the
fast path asks Redis whether the session still exists and whether the tenant was suspended, or the user left it
or changed their password, since the token was made. A "no" hands the request to Django's view, which refuses.
"""

from django.test import Client
from django.urls import reverse

from tenants.services import membership_remove, tenant_set_status

from .conftest import integration, parse_sse
from .test_sse_fast import _cookies, _finish, _get, _login, _send

pytestmark = integration


def _streamed(response) -> bool:
    return response.status_code == 200 and any(e.get("event") == "delta" for e in parse_sse(response.text))


def _fast(response) -> bool:
    """Served by the fast path: Django's security middleware (which sets this header) never ran."""
    return "cross-origin-opener-policy" not in response.headers


def test_a_live_session_streams_on_the_fast_path_with_the_security_headers(alice, alice_chat, chat_settings,
                                                                           chat_redis):
    client = _login(alice)
    answer, url = _send(client, alice_chat)
    _finish(answer, chat_redis, ["still ", "here"])
    response = _get(url, _cookies(client))
    assert _streamed(response) and _fast(response)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"


def test_after_logout_the_old_cookie_and_stream_url_stream_nothing(alice, alice_chat, chat_settings, chat_redis):
    client = _login(alice)
    answer, url = _send(client, alice_chat)
    _finish(answer, chat_redis, ["a secret ", "answer"])
    old_cookies = _cookies(client)
    assert client.post(reverse("logout")).status_code == 302

    response = _get(url, old_cookies)
    assert not _streamed(response)
    assert "a secret" not in response.text
    assert response.status_code in (302, 404)


def test_a_suspended_tenants_stream_does_not_open(alice, alice_chat, acme, chat_settings, chat_redis):
    client = _login(alice)
    answer, url = _send(client, alice_chat)
    _finish(answer, chat_redis, ["before ", "suspension"])
    tenant_set_status(tenant=acme, status="suspended", actor=alice)

    response = _get(url, _cookies(client))
    assert not _streamed(response)
    assert response.status_code == 403 and "is suspended" in response.text

    tenant_set_status(tenant=acme, status="active", actor=alice)  # reactivated: the same URL streams again
    assert _streamed(_get(url, _cookies(client)))


def test_a_member_who_left_the_tenant_gets_no_stream(alice, carol, acme, chat_settings, chat_redis):
    from conversations import services

    chat = services.conversation_create(tenant=acme, owner=carol, title="Carol's notes")
    client = _login(carol)
    answer, url = _send(client, chat)
    _finish(answer, chat_redis, ["carol's ", "answer"])
    membership_remove(membership=carol.memberships.get(tenant=acme), actor=alice)

    response = _get(url, _cookies(client))
    assert not _streamed(response)
    # Someone in no workspace gets the tenant middleware's clear page (403) before any chat view runs.
    assert response.status_code == 403


def test_a_password_change_ends_the_other_sessions_streams(alice, alice_chat, chat_settings, chat_redis):
    laptop = _login(alice)
    answer, url = _send(laptop, alice_chat)
    _finish(answer, chat_redis, ["for ", "the laptop"])
    phone = Client()
    phone.force_login(alice)
    changed = phone.post(reverse("password_change"), {"old_password": "kiwiclaw-demo",
                                                      "new_password1": "another-long-passphrase",
                                                      "new_password2": "another-long-passphrase"})
    assert changed.status_code == 302

    response = _get(url, _cookies(laptop))
    assert not _streamed(response)


def test_a_token_made_after_the_change_uses_the_fast_path_again(alice, carol, acme, chat_settings, chat_redis):
    """A flag refuses only tokens made before it: a member added back streams the fast way once more."""
    from conversations import services
    from tenants.services import membership_create

    membership_remove(membership=carol.memberships.get(tenant=acme), actor=alice)
    membership_create(tenant=acme, user=carol, role="member", actor=alice)
    chat = services.conversation_create(tenant=acme, owner=carol, title="Back again")
    client = _login(carol)
    # Tokens carry whole seconds: one made in the second of the removal is (harmlessly) sent the slow way.
    from tenants.revocation import LEFT_KEY

    chat_redis.set(LEFT_KEY.format(acme.pk, carol.pk), int(chat_redis.time()[0]) - 1)
    answer, url = _send(client, chat)
    _finish(answer, chat_redis, ["welcome ", "back"])
    response = _get(url, _cookies(client))
    assert _streamed(response) and _fast(response)


def test_after_redis_loses_the_flags_old_tokens_go_through_django(alice, alice_chat, acme, chat_settings,
                                                                    chat_redis):
    """A Redis restart without persistence loses the suspension flag; an old token must not stream because of it."""
    from tenants.revocation import READY_KEY, SUSPENDED_KEY, access_flags_ensure

    client = _login(alice)
    answer, url = _send(client, alice_chat)
    _finish(answer, chat_redis, ["before ", "the restart"])
    tenant_set_status(tenant=acme, status="suspended", actor=alice)
    chat_redis.delete(SUSPENDED_KEY.format(acme.pk), READY_KEY)  # what a restart without persistence does

    response = _get(url, _cookies(client))
    assert response.status_code == 403 and not _streamed(response)
    assert access_flags_ensure() is True  # what the next stream served by Django does
    assert chat_redis.exists(SUSPENDED_KEY.format(acme.pk))
    assert _get(url, _cookies(client)).status_code == 403


def test_django_rebuilds_the_lost_flags_and_serves_the_stream_meanwhile(alice, alice_chat, chat_settings,
                                                                         chat_redis):
    from tenants.revocation import READY_KEY

    client = _login(alice)
    answer, url = _send(client, alice_chat)
    _finish(answer, chat_redis, ["served ", "slowly"])
    chat_redis.delete(READY_KEY)

    response = _get(url, _cookies(client))
    assert response.status_code == 200 and "served slowly" in response.text and not _fast(response)
    assert chat_redis.exists(READY_KEY)


def test_a_user_deactivated_in_the_admin_gets_no_stream(alice, alice_chat, chat_settings, chat_redis):
    from tests.factories import UserFactory

    platform_admin = UserFactory(email="admin@kiwiclaw.test", is_staff=True, is_superuser=True)
    client = _login(alice)
    answer, url = _send(client, alice_chat)
    _finish(answer, chat_redis, ["for ", "alice"])
    staff = Client()
    staff.force_login(platform_admin)
    joined = alice.date_joined
    saved = staff.post(f"/admin/tenants/user/{alice.pk}/change/", {
        "email": alice.email, "name": alice.name, "date_joined_0": joined.strftime("%Y-%m-%d"),
        "date_joined_1": joined.strftime("%H:%M:%S"), "_save": "Save"})  # is_active unticked
    assert saved.status_code == 302
    alice.refresh_from_db()
    assert not alice.is_active

    response = _get(url, _cookies(client))
    assert not _streamed(response)
