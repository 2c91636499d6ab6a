import pytest
from django.forms.models import model_to_dict
from django.test import Client

from tenants.models import ApiKey, AuditEvent, Membership, Plan
from tests.factories import make_api_key

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("who", ["alice", "carol"])
def test_non_staff_users_get_no_admin(request, login, who):
    client = login(request.getfixturevalue(who))
    for path in ("/admin/", "/admin/tenants/tenant/", "/admin/tenants/auditevent/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), path


def test_anonymous_gets_the_admin_login(db):
    response = Client().get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def _tenant_form(tenant, **changes):
    # Every field of the admin's form, as a browser posts it (an empty dial means "follow the plan").
    dial = "" if tenant.auto_escalation is None else tenant.auto_escalation
    return {"name": tenant.name, "plan": tenant.plan_id, "status": tenant.status, "auto_escalation": dial,
            "_save": "Save", **changes}


def test_plan_change_in_the_admin_writes_exactly_one_audit_row(platform_admin, acme, login):
    enterprise = Plan.objects.get(slug="enterprise")
    response = login(platform_admin).post(f"/admin/tenants/tenant/{acme.pk}/change/",
                                          _tenant_form(acme, plan=enterprise.pk, name="Acme Corporation"))
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.plan == enterprise and acme.name == "Acme Corporation"
    rows = AuditEvent.objects.filter(tenant=acme)
    assert list(rows.values_list("action", "before", "after")) == [
        ("tenant.plan_change", {"plan": "pro"}, {"plan": "enterprise"})]


def test_saving_the_admin_form_unchanged_writes_no_audit_row(platform_admin, acme, login):
    login(platform_admin).post(f"/admin/tenants/tenant/{acme.pk}/change/", _tenant_form(acme))
    assert not AuditEvent.objects.exists()


def test_suspending_in_the_admin_goes_through_the_service(platform_admin, acme, login):
    login(platform_admin).post(f"/admin/tenants/tenant/{acme.pk}/change/", _tenant_form(acme, status="suspended"))
    acme.refresh_from_db()
    assert not acme.is_active
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["tenant.suspend"]


def test_finance_cannot_change_plans_in_the_admin(finance, acme, login):
    client = login(finance)
    assert client.get("/admin/").status_code == 200  # staff: the admin opens, with nothing of tenants in it
    response = client.post(f"/admin/tenants/tenant/{acme.pk}/change/",
                           _tenant_form(acme, plan=Plan.objects.get(slug="free").pk))
    assert response.status_code == 403
    acme.refresh_from_db()
    assert acme.plan.slug == "pro" and not AuditEvent.objects.exists()


def test_api_key_admin_never_shows_hash_or_secret(platform_admin, acme, alice, login):
    key, secret = make_api_key(tenant=acme, user=alice)
    client = login(platform_admin)
    for path in ("/admin/tenants/apikey/", f"/admin/tenants/apikey/{key.pk}/change/"):
        page = client.get(path).content.decode()
        assert key.prefix in page
        assert key.key_hash not in page and secret not in page
    assert client.get("/admin/tenants/apikey/add/").status_code == 403


def test_api_key_revoke_action_goes_through_the_service(platform_admin, acme, alice, login):
    key, _ = make_api_key(tenant=acme, user=alice)
    login(platform_admin).post("/admin/tenants/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditEvent.objects.filter(action="api_key.revoke", actor=platform_admin).count() == 1


def test_audit_log_admin_is_read_only(platform_admin, alice, acme, login):
    make_api_key(tenant=acme, user=alice)
    event = AuditEvent.objects.get()
    client = login(platform_admin)
    assert client.get("/admin/tenants/auditevent/").status_code == 200
    assert client.get("/admin/tenants/auditevent/add/").status_code == 403
    assert client.get(f"/admin/tenants/auditevent/{event.pk}/delete/").status_code == 403
    page = client.get(f"/admin/tenants/auditevent/{event.pk}/change/").content.decode()
    assert 'name="_save"' not in page
    client.post(f"/admin/tenants/auditevent/{event.pk}/change/", {"action": "forged"})
    event.refresh_from_db()
    assert event.action == "api_key.create"


def test_membership_role_change_in_admin_refuses_the_last_admin(platform_admin, alice, login):
    membership = Membership.objects.get(user=alice)
    response = login(platform_admin).post(f"/admin/tenants/membership/{membership.pk}/change/",
                                          {"role": "member", "_save": "Save"})
    assert response.status_code == 200 and "at least one admin" in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == "admin" and not AuditEvent.objects.exists()


def test_admin_index_lists_the_tenants_models(platform_admin, login):
    page = login(platform_admin).get("/admin/").content.decode()
    for name in ("Plans", "Tenants", "Memberships", "Invites", "Api keys", "Audit events", "Users"):
        assert name in page
    assert ApiKey.objects.count() == 0


def _plan_form(plan, **changes):
    data = {key: ("" if value is None else value) for key, value in model_to_dict(plan).items() if key != "id"}
    data["allowed_tiers"] = ",".join(plan.allowed_tiers)
    data["api_models_allowed"] = "on" if plan.api_models_allowed else ""
    return {**data, "_save": "Save", **changes}


def test_plan_auto_escalation_change_in_the_admin_is_audited(platform_admin, login):
    pro = Plan.objects.get(slug="pro")
    response = login(platform_admin).post(f"/admin/tenants/plan/{pro.pk}/change/", _plan_form(pro, auto_escalation=7))
    assert response.status_code == 302
    pro.refresh_from_db()
    assert pro.auto_escalation == 7
    assert list(AuditEvent.objects.values_list("action", "before", "after")) == [
        ("plan.change", {"auto_escalation": 5}, {"auto_escalation": 7})]
    assert ">7<" in login(platform_admin).get("/admin/tenants/plan/").content.decode().replace(" ", "")


def test_plan_admin_refuses_an_escalation_level_above_10(platform_admin, login):
    pro = Plan.objects.get(slug="pro")
    response = login(platform_admin).post(f"/admin/tenants/plan/{pro.pk}/change/", _plan_form(pro, auto_escalation=11))
    assert response.status_code == 200
    pro.refresh_from_db()
    assert pro.auto_escalation == 5 and not AuditEvent.objects.exists()


def test_tenant_auto_escalation_change_in_the_admin_goes_through_the_service(platform_admin, acme, login):
    response = login(platform_admin).post(f"/admin/tenants/tenant/{acme.pk}/change/",
                                          _tenant_form(acme, auto_escalation=8))
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.auto_escalation == 8
    assert list(AuditEvent.objects.values_list("action", "actor", "before", "after")) == [
        ("tenant.auto_escalation_change", platform_admin.pk,
         {"auto_escalation": 0, "escalation_level": 0}, {"auto_escalation": 8, "escalation_level": 8})]


def test_tenant_admin_refuses_an_escalation_level_on_a_plan_without_max(platform_admin, globex, login):
    response = login(platform_admin).post(f"/admin/tenants/tenant/{globex.pk}/change/",
                                          _tenant_form(globex, auto_escalation=5))
    assert response.status_code == 200 and "does not include MAX" in response.content.decode()
    globex.refresh_from_db()
    assert globex.auto_escalation == 0 and not AuditEvent.objects.exists()


def test_staff_console_shows_each_plans_default_escalation_level(platform_admin, login):
    Plan.objects.filter(slug="enterprise").update(auto_escalation=0)
    page = login(platform_admin).get("/staff/").content.decode()

    def row(slug):
        return page.split(f'data-plan="{slug}"')[1].split("</tr>")[0]

    assert "level 5" in row("pro") and "Off" in row("enterprise") and "(no MAX)" in row("free")
    # Plans are edited on the staff pages (/staff/plans/), not in the Django admin.
    assert f'href="/staff/plans/{Plan.objects.get(slug="pro").pk}/"' in row("pro")
