"""Plans managed in /staff/: create and edit with a review that shows the change and how many workspaces it
affects, one audit row with before and after, bad input as form errors that change nothing."""

from decimal import Decimal

import pytest

from tenants.models import AuditEvent, Plan

pytestmark = pytest.mark.django_db

PRO_FORM = {
    "name": "Pro", "monthly_fee": "49.00", "included_credit": "20.00", "markup_percent": "30",
    "allowed_tiers": ["auto", "max"], "monthly_cap": "500.00", "max_to_auto_share": "0.900",
    "rpm_tenant": "300", "tpm_tenant": "1000000", "rpm_key": "120", "tpm_key": "400000", "auto_escalation": "5",
}


def _snapshot(plan):
    plan = Plan.objects.get(pk=plan.pk)
    return {f.name: getattr(plan, f.name) for f in Plan._meta.fields}


def test_the_editor_shows_the_plan_and_how_many_workspaces_are_on_it(platform_admin, acme, login):
    pro = Plan.objects.get(slug="pro")
    body = login(platform_admin).get(f"/staff/plans/{pro.pk}/").content.decode()
    assert "Edit plan Pro" in body and 'value="49.00"' in body
    assert "data-workspaces>1 workspace</strong> is on this plan" in body
    assert "the plan a workspace is on when the month ends" in body


def test_saving_reviews_first_then_writes_one_audit_row(platform_admin, acme, globex, login):
    pro = Plan.objects.get(slug="pro")
    client = login(platform_admin)
    data = {**PRO_FORM, "monthly_fee": "59.00", "rpm_key": "200"}
    review = client.post(f"/staff/plans/{pro.pk}/", data)
    body = review.content.decode()
    assert review.status_code == 200 and "data-review" in body
    assert "This change affects <strong>1 workspace</strong> on Pro." in body  # acme; globex is on Free
    assert '<tr data-change="monthly_fee"><th scope="row">Monthly fee (USD)</th><td>$49.00</td><td><strong>$59.00' in body
    assert 'data-change="rpm_key"' in body and 'data-change="markup_percent"' not in body  # only what changes
    assert "invoiced the new fee for the whole month" in body
    assert Plan.objects.get(pk=pro.pk).monthly_fee == Decimal("49.00") and not AuditEvent.objects.exists()

    response = client.post(f"/staff/plans/{pro.pk}/", {**data, "confirm": "yes"})
    assert response.status_code == 302
    pro.refresh_from_db()
    assert (pro.monthly_fee, pro.rpm_key) == (Decimal("59.00"), 200)
    (row,) = AuditEvent.objects.all()
    assert (row.action, row.actor, row.target_id) == ("plan.change", platform_admin, str(pro.pk))
    assert row.before == {"monthly_fee": "49.00", "rpm_key": 120}
    assert row.after == {"monthly_fee": "59.00", "rpm_key": 200}


def test_saving_the_same_values_changes_and_audits_nothing(platform_admin, login):
    pro = Plan.objects.get(slug="pro")
    response = login(platform_admin).post(f"/staff/plans/{pro.pk}/", {**PRO_FORM, "confirm": "yes"}, follow=True)
    assert "Pro: nothing changed." in response.content.decode()
    assert not AuditEvent.objects.exists()


def test_a_new_plan_is_created_after_its_review(platform_admin, login):
    client = login(platform_admin)
    data = {**PRO_FORM, "slug": "team", "name": "Team", "monthly_fee": "99", "monthly_cap": "",
            "max_to_auto_share": "", "rpm_tenant": "", "api_models_allowed": "on"}
    body = client.post("/staff/plans/new/", data).content.decode()
    assert "A new plan: no workspace is on it yet." in body and "no cap" in body
    assert not Plan.objects.filter(slug="team").exists()
    client.post("/staff/plans/new/", {**data, "confirm": "yes"})
    team = Plan.objects.get(slug="team")
    assert (team.monthly_fee, team.monthly_cap, team.rpm_tenant, team.api_models_allowed, team.allowed_tiers) == (
        Decimal("99.00"), None, None, True, ["auto", "max"])
    (row,) = AuditEvent.objects.all()
    assert row.action == "plan.create" and row.before is None and row.after["slug"] == "team"
    assert row.after["monthly_fee"] == "99.00"


@pytest.mark.parametrize(("field", "value", "error"), [
    ("monthly_fee", "-1", "Cannot be negative."),
    ("included_credit", "-0.01", "Cannot be negative."),
    ("markup_percent", "-5", "Cannot be negative."),
    ("monthly_cap", "-100", "Cannot be negative."),
    ("rpm_key", "-3", "Cannot be negative."),
    ("max_to_auto_share", "1.5", "less than or equal to 1"),
    ("allowed_tiers", [], "Choose at least one tier."),
    ("auto_escalation", "11", "Select a valid choice"),
    ("monthly_fee", "abc", "Enter a number."),
])
def test_bad_input_is_a_form_error_and_changes_nothing(platform_admin, login, field, value, error):
    pro = Plan.objects.get(slug="pro")
    before = _snapshot(pro)
    client = login(platform_admin)
    for extra in ({}, {"confirm": "yes"}):  # a forged confirmation is checked all the same
        response = client.post(f"/staff/plans/{pro.pk}/", {**PRO_FORM, field: value, **extra})
        assert response.status_code == 400 and error in response.content.decode()
    assert _snapshot(pro) == before and not AuditEvent.objects.exists()


def test_a_taken_slug_is_refused(platform_admin, login):
    response = login(platform_admin).post("/staff/plans/new/", {**PRO_FORM, "slug": "pro", "confirm": "yes"})
    assert response.status_code == 400 and "A plan with this slug exists already." in response.content.decode()
    assert Plan.objects.filter(slug="pro").count() == 1


def test_the_service_refuses_negative_values_too(platform_admin):
    from django.core.exceptions import ValidationError

    from tenants.plan_editing import plan_save, plan_values

    pro = Plan.objects.get(slug="pro")
    with pytest.raises(ValidationError):
        plan_save(plan=pro, values={**plan_values(pro), "monthly_cap": Decimal("-1")}, actor=platform_admin)
    assert Plan.objects.get(pk=pro.pk).monthly_cap == Decimal("500.00")


@pytest.mark.parametrize("who", ["alice", "finance"])
def test_only_platform_admins_manage_plans(request, login, who):
    client = login(request.getfixturevalue(who))
    pro = Plan.objects.get(slug="pro")
    for url in ("/staff/plans/", "/staff/plans/new/", f"/staff/plans/{pro.pk}/"):
        assert client.get(url).status_code == 403
        assert client.post(url, {**PRO_FORM, "confirm": "yes", "monthly_fee": "1"}).status_code == 403
    assert Plan.objects.get(pk=pro.pk).monthly_fee == Decimal("49.00")


def test_the_plans_page_counts_workspaces_per_plan(platform_admin, acme, globex, login):
    body = login(platform_admin).get("/staff/plans/").content.decode()
    pro_row = body.split('data-plan="pro"')[1].split("</tr>")[0]
    assert '<td data-label="Workspaces">1</td>' in pro_row
    assert 'href="/staff/plans/new/"' in body and 'aria-current="page">Plans</a>' in body
