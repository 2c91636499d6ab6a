import pytest

from tenants.keys import hash_secret
from tenants.models import ApiKey, AuditEvent

pytestmark = pytest.mark.django_db


def test_create_shows_the_secret_once_and_stores_only_its_hash(alice, login):
    client = login(alice)
    response = client.post("/api-keys/new/", {"name": "billing-agent"})
    page = response.content.decode()
    secret = page.split("data-new-secret")[1].split('<code id="new-secret">')[1].split("</code>")[0]
    assert secret.startswith("kc-")
    key = ApiKey.objects.get()
    assert key.key_hash == hash_secret(secret) and key.created_by == alice and key.name == "billing-agent"
    assert AuditEvent.objects.filter(action="api_key.create", target_id=str(key.pk)).count() == 1
    listing = client.get("/api-keys/").content.decode()
    assert secret not in listing
    for shown in ("billing-agent", key.prefix, "alice@acme.test", "never", "active"):
        assert shown in listing


def test_a_key_without_a_name_is_refused(alice, login):
    response = login(alice).post("/api-keys/new/", {"name": "   "})
    assert response.status_code == 400
    assert not ApiKey.objects.exists()


def test_rename_and_revoke(alice, acme, login):
    client = login(alice)
    client.post("/api-keys/new/", {"name": "old"})
    key = ApiKey.objects.get()
    client.post(f"/api-keys/{key.pk}/rename/", {"name": "new name"})
    client.post(f"/api-keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.name == "new name" and key.revoked_at is not None and not key.is_active
    assert "revoked" in client.get("/api-keys/").content.decode()
    actions = list(AuditEvent.objects.filter(target_id=str(key.pk)).order_by("id").values_list("action", flat=True))
    assert actions == ["api_key.create", "api_key.rename", "api_key.revoke"]


def test_htmx_revoke_returns_only_the_panel(alice, login):
    client = login(alice)
    client.post("/api-keys/new/", {"name": "k"})
    key = ApiKey.objects.get()
    response = client.post(f"/api-keys/{key.pk}/revoke/", headers={"HX-Request": "true"})
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="keys-panel">') and "revoked" in page


def test_members_cannot_create_rename_or_revoke_keys(alice, carol, acme, login):
    login(alice).post("/api-keys/new/", {"name": "k"})
    key = ApiKey.objects.get()
    client = login(carol)
    assert client.post("/api-keys/new/", {"name": "mine"}).status_code == 403
    assert client.post(f"/api-keys/{key.pk}/rename/", {"name": "x"}).status_code == 403
    assert client.post(f"/api-keys/{key.pk}/revoke/").status_code == 403
    key.refresh_from_db()
    assert key.name == "k" and key.is_active and ApiKey.objects.count() == 1
