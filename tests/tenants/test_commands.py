from io import StringIO

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command

from tenants.keys import hash_secret
from tenants.models import ApiKey, AuditEvent, Membership, Plan, Tenant, User

pytestmark = pytest.mark.django_db


def _run(*args, **kwargs):
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def test_create_api_key_prints_the_secret_and_acts_as_the_first_admin(alice, carol):
    out, err = _run("create_api_key", "--tenant", "acme", "--name", "ci")
    secret = out.strip()
    key = ApiKey.objects.get()
    assert secret.startswith("kc-") and key.key_hash == hash_secret(secret)
    assert key.created_by == alice and key.tenant.slug == "acme" and key.name == "ci"
    assert "alice@acme.test" in err


def test_create_api_key_for_a_named_member(alice, carol):
    _run("create_api_key", "--tenant", "acme", "--name", "carol's", "--user", "CAROL@acme.test")
    assert ApiKey.objects.get().created_by == carol


@pytest.mark.parametrize(("args", "message"), [
    (["--tenant", "nope", "--name", "x"], "No tenant with slug 'nope'"),
    (["--tenant", "acme", "--name", "x", "--user", "bob@globex.test"], "is not a member of acme"),
    (["--tenant", "acme", "--name", "x", "--user", "ghost@x.test"], "No user with email"),
    (["--tenant", "globex", "--name", "x"], "globex has no admin"),
    (["--tenant", "acme", "--name", "  "], "Give the key a name"),
])
def test_create_api_key_errors_are_clear_and_create_nothing(alice, bob, args, message):
    with pytest.raises(CommandError, match=message):
        _run("create_api_key", *args)
    assert not ApiKey.objects.exists()


def test_seed_demo_refuses_without_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG"):
        _run("seed_demo")
    assert not User.objects.exists()


def _snapshot():
    return {
        "users": sorted(User.objects.values_list("email", "name", "is_staff", "is_superuser", "is_active", "password")),
        "tenants": sorted(Tenant.objects.values_list("slug", "name", "plan__slug", "status")),
        "memberships": sorted(Membership.objects.values_list("user__email", "tenant__slug", "role")),
        "plans": sorted(Plan.objects.values_list("slug", "name", "monthly_fee")),
        "groups": sorted(Group.objects.values_list("name", "permissions__codename")),
        "user_groups": sorted(User.objects.filter(groups__isnull=False).values_list("email", "groups__name")),
        "permissions": Permission.objects.count(),
        "audit": AuditEvent.objects.count(),
    }


def test_seed_demo_twice_leaves_the_same_data():
    out, _ = _run("seed_demo", "--force")
    first = _snapshot()
    _run("seed_demo", "--force")
    assert _snapshot() == first
    assert first["tenants"] == [("acme", "Acme Corp", "pro", "active"), ("globex", "Globex", "free", "active")]
    assert first["memberships"] == [("alice@acme.test", "acme", "admin"), ("bob@globex.test", "globex", "member"),
                                    ("carol@acme.test", "acme", "member")]
    for email in ("alice@acme.test", "carol@acme.test", "bob@globex.test", "admin@kiwiclaw.test",
                  "finance@kiwiclaw.test"):
        assert email in out
        assert User.objects.get(email=email).check_password("kiwiclaw-demo")
    assert "kiwiclaw-demo" in out


def test_seed_demo_accounts_have_the_documented_powers(settings):
    settings.DEBUG = True
    _run("seed_demo")
    admin = User.objects.get(email="admin@kiwiclaw.test")
    finance = User.objects.get(email="finance@kiwiclaw.test")
    assert admin.is_staff and admin.is_superuser
    assert finance.is_staff and not finance.is_superuser
    assert finance.has_perm("billing.view_finance") and not finance.has_perm("tenants.manage_tenants")
    assert list(finance.groups.values_list("name", flat=True)) == ["finance"]


def test_seed_demo_restores_a_changed_demo_password():
    _run("seed_demo", "--force")
    alice = User.objects.get(email="alice@acme.test")
    alice.set_password("something-else")
    alice.save()
    _run("seed_demo", "--force")
    alice.refresh_from_db()
    assert alice.check_password("kiwiclaw-demo")
