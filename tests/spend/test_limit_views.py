"""The admin's pages for a key's and a member's limits: saving, audit, and bad input that changes nothing."""

from decimal import Decimal

import pytest
from django.urls import reverse

from tenants.models import ApiKey, AuditEvent, Membership
from tests.factories import make_api_key


@pytest.fixture
def admin_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def key(acme, alice):
    return make_api_key(tenant=acme, user=alice, name="billing-agent")[0]


def _snapshot(obj):
    obj.refresh_from_db()
    return (obj.monthly_limit, obj.allowed_tiers, getattr(obj, "expires_at", None), obj.limits_changed_at)


def test_the_key_page_shows_the_form_and_saving_audits_once(admin_client, key):
    page = admin_client.get(reverse("api_key_limits", args=[key.pk]))
    assert page.status_code == 200
    assert "Limits of the API key “billing-agent”" in page.text and 'name="monthly_limit"' in page.text
    response = admin_client.post(reverse("api_key_limits", args=[key.pk]), {
        "monthly_limit": "25.5", "allowed_tiers": ["auto"], "expires_at": "2999-01-31T12:00"})
    assert response.status_code == 302 and response["Location"] == reverse("api_keys")
    key.refresh_from_db()
    assert key.monthly_limit == Decimal("25.50") and key.allowed_tiers == ["auto"]
    assert key.expires_at.isoformat() == "2999-01-31T12:00:00+00:00"
    [event] = AuditEvent.objects.filter(action="api_key.limits")
    assert event.before["monthly_limit"] is None and event.after["monthly_limit"] == "25.50"
    listing = admin_client.get(reverse("api_keys")).text
    assert reverse("api_key_limits", args=[key.pk]) in listing and "$25.50/mo" in listing


def test_all_of_the_plans_tiers_means_follow_the_plan(admin_client, key):
    admin_client.post(reverse("api_key_limits", args=[key.pk]), {"monthly_limit": "", "allowed_tiers": ["auto", "max"]})
    key.refresh_from_db()
    assert key.allowed_tiers is None and key.monthly_limit is None
    assert not AuditEvent.objects.filter(action="api_key.limits").exists()  # nothing changed


@pytest.mark.parametrize(("data", "field", "error"), [
    ({"monthly_limit": "-1", "allowed_tiers": ["auto"]}, "monthly_limit", "Enter a limit of 0 or more"),
    ({"monthly_limit": "ten", "allowed_tiers": ["auto"]}, "monthly_limit", "Enter an amount in USD"),
    ({"monthly_limit": "5"}, "allowed_tiers", "Allow at least one tier."),
    ({"monthly_limit": "5", "allowed_tiers": ["auto"], "expires_at": "2001-01-01T00:00"}, "expires_at",
     "Choose an expiry in the future"),
])
def test_bad_input_on_the_key_page_is_a_form_error_and_changes_nothing(admin_client, key, data, field, error):
    before = _snapshot(key)
    response = admin_client.post(reverse("api_key_limits", args=[key.pk]), data)
    assert response.status_code == 400
    assert error in " ".join(response.context["form"].errors[field])
    assert error in response.text
    assert _snapshot(key) == before
    assert not AuditEvent.objects.filter(action="api_key.limits").exists()


def test_tiers_wider_than_the_plan_are_refused(client, globex, bob):
    bob_membership = Membership.objects.get(user=bob, tenant=globex)
    bob_membership.role = "admin"
    bob_membership.save()
    client.force_login(bob)
    before = _snapshot(bob_membership)
    response = client.post(reverse("team_member_limits", args=[bob_membership.pk]),
                           {"monthly_limit": "3", "allowed_tiers": ["auto", "max"]})
    assert response.status_code == 400
    assert "The Free plan does not include MAX: a member or key can be narrower than the plan, never wider." in \
        response.text
    assert _snapshot(bob_membership) == before


def test_the_member_page_saves_a_limit_and_the_team_page_links_to_it(admin_client, acme, carol):
    membership = Membership.objects.get(user=carol, tenant=acme)
    page = admin_client.get(reverse("team_member_limits", args=[membership.pk]))
    assert page.status_code == 200 and "carol@acme.test" in page.text
    response = admin_client.post(reverse("team_member_limits", args=[membership.pk]),
                                 {"monthly_limit": "12", "allowed_tiers": ["auto"]})
    assert response.status_code == 302 and response["Location"] == reverse("team")
    membership.refresh_from_db()
    assert (membership.monthly_limit, membership.allowed_tiers) == (Decimal("12.00"), ["auto"])
    assert membership.limits_changed_at is not None
    assert AuditEvent.objects.filter(action="membership.limits", target_id=str(membership.pk)).count() == 1
    team = admin_client.get(reverse("team")).text
    assert reverse("team_member_limits", args=[membership.pk]) in team and "$12.00/mo · AUTO" in team


def test_a_revoked_key_cannot_be_changed(admin_client, key, alice):
    from tenants.services import api_key_revoke

    api_key_revoke(api_key=key, actor=alice)
    response = admin_client.post(reverse("api_key_limits", args=[key.pk]), {"monthly_limit": "1",
                                                                           "allowed_tiers": ["auto"]})
    assert response.status_code == 400 and "This key is revoked" in response.text
    assert ApiKey.objects.get(pk=key.pk).monthly_limit is None


def test_the_pages_show_this_months_spend_beside_the_limit(admin_client, acme, globex, alice, carol, key):
    """From the ledger, this month, this workspace only: Pro's markup is 30%, so cost 10 + 2.50 bills $16.25."""
    from datetime import timedelta

    from billing.months import month_bounds, month_start
    from tests.billing.conftest import record_usage, record_usage_at

    other = make_api_key(tenant=acme, user=alice, name="other")[0]
    ApiKey.objects.filter(pk=key.pk).update(monthly_limit=Decimal("20"))
    record_usage(acme, source="api", user_id=alice.pk, api_key_id=key.pk, cost=Decimal("10"))
    record_usage(acme, source="api", user_id=alice.pk, api_key_id=key.pk, cost=Decimal("2.5"))
    record_usage(acme, source="api", user_id=alice.pk, api_key_id=other.pk, cost=Decimal("100"))
    record_usage(globex, source="api", api_key_id=key.pk, user_id=carol.pk, cost=Decimal("50"))  # not this workspace
    record_usage(acme, source="chat", user_id=carol.pk, cost=Decimal("1"))
    last_month = month_bounds(month_start())[0] - timedelta(days=2)
    record_usage_at(acme, last_month, user_id=carol.pk)  # an ended month: not counted

    page = admin_client.get(reverse("api_key_limits", args=[key.pk])).text
    assert "Spent this month: <strong>$16.25</strong> of its $20.00 limit (81.3%)" in page
    member = Membership.objects.get(user=carol, tenant=acme)
    page = admin_client.get(reverse("team_member_limits", args=[member.pk])).text
    assert "Spent this month: <strong>$1.30</strong> (no limit of its own)" in page
