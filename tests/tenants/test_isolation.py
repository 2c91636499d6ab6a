"""A member of acme asking for any globex object gets exactly the answer a missing id gets: 404, same body,
and the object is untouched."""

import pytest

from tenants.models import ApiKey, AuditEvent, Invite, Membership
from tenants.services import api_key_create, audit_record, invite_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MISSING_ID = 2_000_000_000


@pytest.fixture
def globex_objects(globex, bob):
    globex_admin = UserFactory(email="gail@globex.test")
    Membership.objects.create(user=globex_admin, tenant=globex, role="admin")
    invite, _ = invite_create(tenant=globex, role="member", actor=globex_admin)
    key, _ = api_key_create(tenant=globex, name="globex key", created_by=globex_admin)
    event = audit_record(actor=globex_admin, action="test.event", tenant=globex)
    return {
        "membership": Membership.objects.get(user=bob, tenant=globex),
        "invite": invite,
        "api_key": key,
        "audit": event,
    }


REQUESTS = [
    ("membership", "post", "/team/members/{}/role/", {"role": "admin"}),
    ("membership", "post", "/team/members/{}/remove/", {}),
    ("invite", "post", "/team/invites/{}/revoke/", {}),
    ("api_key", "post", "/api-keys/{}/rename/", {"name": "pwned"}),
    ("api_key", "post", "/api-keys/{}/revoke/", {}),
    ("audit", "get", "/team/audit/{}/", {}),
]


def _state(obj):
    obj = type(obj).objects.filter(pk=obj.pk).values().first()
    return obj


@pytest.mark.parametrize(("kind", "method", "path", "data"), REQUESTS, ids=[r[2] for r in REQUESTS])
def test_another_tenants_object_answers_like_a_missing_one(alice, globex_objects, login, kind, method, path, data):
    obj = globex_objects[kind]
    before = _state(obj)
    audit_rows = AuditEvent.objects.count()
    client = login(alice)
    foreign = getattr(client, method)(path.format(obj.pk), data)
    missing = getattr(client, method)(path.format(MISSING_ID), data)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    assert _state(obj) == before
    assert AuditEvent.objects.count() == audit_rows


def test_tenant_pages_list_only_the_current_tenants_rows(alice, globex_objects, login):
    client = login(alice)
    team = client.get("/team/").content.decode()
    keys = client.get("/api-keys/").content.decode()
    audit = client.get("/team/audit/").content.decode()
    assert "bob@globex.test" not in team and "gail@globex.test" not in team
    assert f'data-invite="{globex_objects["invite"].pk}"' not in team
    assert "globex key" not in keys
    assert "test.event" not in audit


def test_selectors_refuse_another_tenants_ids(acme, globex_objects):
    from tenants import selectors

    for getter, kwarg, obj in [
        (selectors.membership_get, "membership_id", globex_objects["membership"]),
        (selectors.invite_get, "invite_id", globex_objects["invite"]),
        (selectors.api_key_get, "api_key_id", globex_objects["api_key"]),
        (selectors.audit_get, "event_id", globex_objects["audit"]),
    ]:
        with pytest.raises(type(obj).DoesNotExist):
            getter(tenant=acme, **{kwarg: obj.pk})
    assert Invite.objects.filter(tenant=acme).count() == 0 and ApiKey.objects.filter(tenant=acme).count() == 0
