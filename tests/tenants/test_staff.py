import pytest
from django.test import Client

from tenants.models import AuditEvent, Plan, Tenant

pytestmark = pytest.mark.django_db


def test_anonymous_is_sent_to_log_in(db):
    response = Client().get("/staff/")
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=/staff/")


@pytest.mark.parametrize("who", ["alice", "carol", "finance"])
def test_non_platform_admins_get_403_and_change_nothing(request, acme, login, who):
    user = request.getfixturevalue(who)
    client = login(user)
    assert client.get("/staff/").status_code == 403
    assert client.get("/staff/audit/").status_code == 403
    assert client.post(f"/staff/tenants/{acme.pk}/plan/", {"plan": "enterprise"}).status_code == 403
    assert client.post(f"/staff/tenants/{acme.pk}/status/", {"status": "suspended"}).status_code == 403
    acme.refresh_from_db()
    assert acme.plan.slug == "pro" and acme.is_active
    assert not AuditEvent.objects.exists()


def test_finance_is_not_superuser_and_has_no_manage_tenants(finance):
    assert finance.is_staff and not finance.is_superuser
    assert finance.has_perm("billing.view_finance")
    assert not finance.has_perm("tenants.manage_tenants")


def test_console_lists_tenants_with_plan_status_and_member_count(platform_admin, alice, carol, bob, login):
    page = login(platform_admin).get("/staff/").content.decode()
    acme_row = page.split('data-tenant="acme"')[1].split("</tr>")[0]
    assert "Acme Corp" in acme_row and ">2<" in acme_row.replace(" ", "")
    assert 'value="pro" selected' in acme_row and "active" in acme_row
    assert 'data-tenant="globex"' in page


@pytest.mark.parametrize("who", ["platform_admin", "tenant_manager"])
def test_plan_change_from_the_console_writes_one_audit_row(request, acme, login, who):
    user = request.getfixturevalue(who)
    response = login(user).post(f"/staff/tenants/{acme.pk}/plan/", {"plan": "enterprise"}, follow=True)
    assert "moved from Pro to Enterprise" in response.content.decode()
    acme.refresh_from_db()
    assert acme.plan.slug == "enterprise"
    rows = AuditEvent.objects.filter(tenant=acme)
    assert rows.count() == 1
    row = rows.get()
    assert (row.action, row.actor, row.before, row.after) == (
        "tenant.plan_change", user, {"plan": "pro"}, {"plan": "enterprise"})


def test_choosing_the_same_plan_changes_and_audits_nothing(platform_admin, acme, login):
    response = login(platform_admin).post(f"/staff/tenants/{acme.pk}/plan/", {"plan": "pro"}, follow=True)
    assert "nothing changed" in response.content.decode()
    assert not AuditEvent.objects.exists()


def test_unknown_plan_is_refused(platform_admin, acme, login):
    response = login(platform_admin).post(f"/staff/tenants/{acme.pk}/plan/", {"plan": "gold"}, follow=True)
    assert "Choose one of the existing plans" in response.content.decode()
    acme.refresh_from_db()
    assert acme.plan.slug == "pro" and not AuditEvent.objects.exists()


def test_suspend_and_reactivate_each_write_one_audit_row(platform_admin, acme, login):
    client = login(platform_admin)
    client.post(f"/staff/tenants/{acme.pk}/status/", {"status": "suspended"})
    acme.refresh_from_db()
    assert acme.status == Tenant.STATUS_SUSPENDED
    client.post(f"/staff/tenants/{acme.pk}/status/", {"status": "active"})
    acme.refresh_from_db()
    assert acme.is_active
    actions = list(AuditEvent.objects.filter(tenant=acme).order_by("id").values_list("action", flat=True))
    assert actions == ["tenant.suspend", "tenant.reactivate"]


def test_staff_audit_log_spans_tenants_and_filters(platform_admin, acme, globex, login):
    client = login(platform_admin)
    client.post(f"/staff/tenants/{acme.pk}/plan/", {"plan": "enterprise"})
    client.post(f"/staff/tenants/{globex.pk}/status/", {"status": "suspended"})
    page = client.get("/staff/audit/").content.decode()
    assert "<code>tenant.plan_change</code>" in page and "<code>tenant.suspend</code>" in page
    only_globex = client.get(f"/staff/audit/?tenant={globex.pk}").content.decode()
    assert "<code>tenant.suspend</code>" in only_globex and "<code>tenant.plan_change</code>" not in only_globex


def test_console_query_count_is_flat(platform_admin, login, django_assert_max_num_queries):
    from tests.factories import TenantFactory

    for _ in range(20):
        TenantFactory(plan=Plan.objects.get(slug="free"))
    client = login(platform_admin)
    with django_assert_max_num_queries(10):
        client.get("/staff/")
