from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tenants.keys import hash_secret
from tenants.middleware import SESSION_KEY
from tenants.models import AuditEvent, Invite, Membership, User
from tenants.services import invite_create
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _token_from(page: str) -> str:
    return page.split("/invite/")[1].split("/")[0]


def test_admin_sees_members_and_roles(alice, carol, login):
    page = login(alice).get("/team/").content.decode()
    assert "alice@acme.test" in page and "carol@acme.test" in page


def test_member_gets_403_on_every_team_and_key_page(alice, carol, login):
    client = login(carol)
    alice_membership = Membership.objects.get(user=alice)
    for method, path in [
        ("get", "/team/"), ("get", "/api-keys/"), ("get", "/team/audit/"),
        ("post", "/team/invites/"), ("post", f"/team/members/{alice_membership.pk}/remove/"),
        ("post", f"/team/members/{alice_membership.pk}/role/"), ("post", "/api-keys/new/"),
    ]:
        assert getattr(client, method)(path, {"role": "member", "name": "x"}).status_code == 403, path
    assert Membership.objects.get(pk=alice_membership.pk).role == "admin"
    assert not Invite.objects.exists()


def test_change_a_role_writes_one_audit_row(alice, carol, login):
    membership = Membership.objects.get(user=carol)
    response = login(alice).post(f"/team/members/{membership.pk}/role/", {"role": "admin"})
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == "admin"
    assert AuditEvent.objects.filter(action="membership.role_change", target_id=str(membership.pk)).count() == 1


def test_remove_a_member(alice, carol, login):
    membership = Membership.objects.get(user=carol)
    response = login(alice).post(f"/team/members/{membership.pk}/remove/", follow=True)
    assert "carol@acme.test was removed" in response.content.decode()
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert User.objects.filter(pk=carol.pk).exists()


@pytest.mark.parametrize("action", ["remove", "demote"])
def test_the_last_admin_cannot_be_removed_or_demoted(alice, carol, login, action):
    membership = Membership.objects.get(user=alice)
    client = login(alice)
    if action == "remove":
        response = client.post(f"/team/members/{membership.pk}/remove/", follow=True)
    else:
        response = client.post(f"/team/members/{membership.pk}/role/", {"role": "member"}, follow=True)
    assert "last admin" in response.content.decode() or "at least one admin" in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == "admin"
    assert not AuditEvent.objects.filter(action__startswith="membership.").exists()


def test_an_admin_who_demotes_themselves_goes_home(alice, carol, login):
    Membership.objects.filter(user=carol).update(role="admin")
    client = login(alice)
    response = client.post(f"/team/members/{Membership.objects.get(user=alice).pk}/role/", {"role": "member"})
    assert response["Location"] == "/"
    assert client.get("/team/").status_code == 403


def test_invite_link_is_shown_once_with_its_expiry(alice, login):
    client = login(alice)
    response = client.post("/team/invites/", {"role": "member", "email": ""})
    page = response.content.decode()
    assert response.status_code == 200 and "data-invite-link" in page and "shown only" in page
    token = _token_from(page.split("data-invite-link")[1])
    invite = Invite.objects.get()
    assert invite.token_hash == hash_secret(token)
    assert invite.expires_at.strftime("%-d %b %Y") in page
    assert token not in client.get("/team/").content.decode()


def test_htmx_invite_returns_only_the_panel(alice, login):
    response = login(alice).post("/team/invites/", {"role": "admin"}, headers={"HX-Request": "true"})
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="team-panel">')
    assert "<html" not in page and "data-invite-link" in page


def test_logged_in_user_accepts_an_invite_and_lands_in_that_tenant(alice, acme, bob, login):
    _invite, token = invite_create(tenant=acme, role="member", actor=alice)
    client = login(bob)
    assert "Join Acme Corp" in client.get(f"/invite/{token}/").content.decode()
    response = client.post(f"/invite/{token}/")
    assert response.status_code == 302
    assert Membership.objects.get(user=bob, tenant=acme).role == "member"
    assert client.session[SESSION_KEY] == acme.pk


def test_a_new_person_signs_up_through_the_invite(alice, acme):
    _invite, token = invite_create(tenant=acme, role="admin", actor=alice)
    client = Client()
    response = client.post(f"/invite/{token}/", {"email": "erin@acme.test", "name": "Erin",
                                                  "password": "a-long-unusual-passphrase"})
    assert response.status_code == 302
    erin = User.objects.get(email="erin@acme.test")
    assert list(erin.memberships.values_list("tenant__slug", "role")) == [("acme", "admin")]
    assert client.session[SESSION_KEY] == acme.pk


def _dead_invite(kind, *, acme, alice, bob):
    invite, token = invite_create(tenant=acme, role="member", actor=alice)
    if kind == "expired":
        Invite.objects.filter(pk=invite.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    elif kind == "revoked":
        Invite.objects.filter(pk=invite.pk).update(revoked_at=timezone.now())
    elif kind == "used":
        Invite.objects.filter(pk=invite.pk).update(accepted_at=timezone.now(), accepted_by=bob)
    elif kind == "unknown":
        token = "no-such-token"
    return token


@pytest.mark.parametrize(("kind", "message", "status"), [
    ("expired", "has expired", 410), ("used", "already been used", 410),
    ("revoked", "has been revoked", 410), ("unknown", "not valid", 404),
])
def test_dead_invite_links_are_refused_and_change_nothing(alice, acme, bob, carol, login, kind, message, status):
    token = _dead_invite(kind, acme=acme, alice=alice, bob=bob)
    memberships, users = Membership.objects.count(), User.objects.count()
    client = login(UserFactory(email="frank@elsewhere.test"))
    for response in (client.get(f"/invite/{token}/"), client.post(f"/invite/{token}/")):
        assert response.status_code == status
        assert message in response.content.decode()
    anonymous = Client().post(f"/invite/{token}/", {"email": "gina@x.test", "password": "a-long-unusual-passphrase"})
    assert anonymous.status_code == status and message in anonymous.content.decode()
    assert (Membership.objects.count(), User.objects.count()) == (memberships, users + 1)  # only frank


def test_an_invite_cannot_be_used_twice(alice, acme, bob, login):
    _invite, token = invite_create(tenant=acme, role="member", actor=alice)
    assert login(bob).post(f"/invite/{token}/").status_code == 302
    other = login(UserFactory(email="hank@elsewhere.test"))
    response = other.post(f"/invite/{token}/")
    assert response.status_code == 410 and "already been used" in response.content.decode()
    assert not Membership.objects.filter(user__email="hank@elsewhere.test").exists()


def test_invite_for_an_address_refuses_other_accounts(alice, acme, bob, login):
    _invite, token = invite_create(tenant=acme, role="member", actor=alice, email="ivy@acme.test")
    response = login(bob).post(f"/invite/{token}/")
    assert response.status_code == 400 and "This invite is for ivy@acme.test" in response.content.decode()
    assert not Membership.objects.filter(user=bob, tenant=acme).exists()
    assert Invite.objects.get().accepted_at is None


def test_invite_sign_up_with_a_taken_email_saves_nothing(alice, acme, bob):
    _invite, token = invite_create(tenant=acme, role="member", actor=alice)
    response = Client().post(f"/invite/{token}/", {"email": "bob@globex.test", "password": "a-long-unusual-passphrase"})
    assert response.status_code == 400 and "already exists" in response.content.decode()
    assert not Membership.objects.filter(user=bob, tenant=acme).exists()
    assert Invite.objects.get().accepted_at is None


def test_revoke_an_invite(alice, acme, login):
    invite, token = invite_create(tenant=acme, role="member", actor=alice)
    login(alice).post(f"/team/invites/{invite.pk}/revoke/")
    invite.refresh_from_db()
    assert invite.revoked_at is not None
    assert AuditEvent.objects.filter(action="invite.revoke").count() == 1
    assert Client().get(f"/invite/{token}/").status_code == 410


def test_team_audit_log_lists_this_tenants_events(alice, carol, login):
    membership = Membership.objects.get(user=carol)
    client = login(alice)
    client.post(f"/team/members/{membership.pk}/role/", {"role": "admin"})
    event = AuditEvent.objects.get(action="membership.role_change")
    listing = client.get("/team/audit/").content.decode()
    # The action in words; its code only as a data attribute.
    assert ">Member role changed</td>" in listing and ">membership.role_change<" not in listing
    assert 'data-action="membership.role_change"' in listing
    detail = client.get(f"/team/audit/{event.pk}/").content.decode()
    assert "carol@acme.test" in detail
    assert ">Member role changed</h1>" in detail and f"Member {membership.pk}" in detail


def test_team_page_query_count_does_not_grow_with_members(alice, acme, login, django_assert_max_num_queries):
    for _ in range(15):
        MembershipFactory(tenant=acme)
    client = login(alice)
    client.get("/team/")
    with django_assert_max_num_queries(12):
        client.get("/team/")
