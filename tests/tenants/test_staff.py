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
    response = login(user).post(f"/staff/tenants/{acme.pk}/plan/", {"plan": "enterprise", "confirm": "yes"},
                                follow=True)
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
    client.post(f"/staff/tenants/{acme.pk}/status/", {"status": "suspended", "confirm": "yes"})
    acme.refresh_from_db()
    assert acme.status == Tenant.STATUS_SUSPENDED
    client.post(f"/staff/tenants/{acme.pk}/status/", {"status": "active"})
    acme.refresh_from_db()
    assert acme.is_active
    actions = list(AuditEvent.objects.filter(tenant=acme).order_by("id").values_list("action", flat=True))
    assert actions == ["tenant.suspend", "tenant.reactivate"]


def test_staff_audit_log_spans_tenants_and_filters(platform_admin, acme, globex, login):
    client = login(platform_admin)
    client.post(f"/staff/tenants/{acme.pk}/plan/", {"plan": "enterprise", "confirm": "yes"})
    client.post(f"/staff/tenants/{globex.pk}/status/", {"status": "suspended", "confirm": "yes"})
    page = client.get("/staff/audit/").content.decode()
    assert ">Plan changed</a>" in page and ">Workspace suspended</a>" in page
    only_globex = client.get(f"/staff/audit/?tenant={globex.pk}").content.decode()
    assert ">Workspace suspended</a>" in only_globex and ">Plan changed</a>" not in only_globex


def test_console_query_count_is_flat(platform_admin, login, django_assert_max_num_queries):
    from tests.factories import TenantFactory

    for _ in range(20):
        TenantFactory(plan=Plan.objects.get(slug="free"))
    client = login(platform_admin)
    with django_assert_max_num_queries(10):
        client.get("/staff/")


# --- confirmation, navigation, readable audit ----------------------------------------------------------------

def test_a_plan_change_asks_first_naming_the_workspace_and_the_change(platform_admin, acme, login):
    client = login(platform_admin)
    response = client.post(f"/staff/tenants/{acme.pk}/plan/", {"plan": "enterprise", "next": "/staff/?q=ac"})
    body = response.content.decode()
    assert response.status_code == 200 and 'data-confirm="plan"' in body
    assert "Move Acme Corp to Enterprise?" in body and "plan Pro → Enterprise" in body
    assert "$49.00 a month" in body and "$499.00 a month" in body  # the terms before and after
    assert "the plan the workspace is on when the month ends" in body
    assert 'name="confirm" value="yes"' in body and 'name="plan" value="enterprise"' in body
    assert 'href="/staff/?q=ac"' in body  # Cancel goes back where the admin came from
    acme.refresh_from_db()
    assert acme.plan.slug == "pro" and not AuditEvent.objects.exists()


def test_suspending_asks_first_and_reactivating_does_not(platform_admin, acme, login):
    client = login(platform_admin)
    body = client.post(f"/staff/tenants/{acme.pk}/status/", {"status": "suspended"}).content.decode()
    assert 'data-confirm="suspend"' in body and "Suspend Acme Corp?" in body and "active → suspended" in body
    acme.refresh_from_db()
    assert acme.is_active and not AuditEvent.objects.exists()
    client.post(f"/staff/tenants/{acme.pk}/status/", {"status": "suspended", "confirm": "yes"})
    acme.refresh_from_db()
    assert not acme.is_active
    response = client.post(f"/staff/tenants/{acme.pk}/status/", {"status": "active"})
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.is_active


def test_a_confirmation_for_an_unknown_plan_is_still_refused(platform_admin, acme, login):
    response = login(platform_admin).post(f"/staff/tenants/{acme.pk}/plan/", {"plan": "gold", "confirm": "yes"},
                                          follow=True)
    assert "Choose one of the existing plans" in response.content.decode()
    acme.refresh_from_db()
    assert acme.plan.slug == "pro" and not AuditEvent.objects.exists()


@pytest.mark.parametrize("path", ["/staff/", "/staff/audit/", "/staff/routing/"])
def test_every_staff_page_links_the_others(platform_admin, login, path):
    body = login(platform_admin).get(path).content.decode()
    nav = body.split('<nav class="staff-nav"')[1].split("</nav>")[0]
    for href in ('href="/staff/"', 'href="/staff/routing/"', 'href="/staff/audit/"'):
        assert href in nav, (path, href)
    assert 'aria-current="page"' in nav


def test_audit_actions_read_as_words():
    from tenants.audit_labels import action_label

    assert action_label("tenant.suspend") == "Workspace suspended"
    assert action_label("plan.change") == "Plan edited"
    assert action_label("catalog.endpoint_create") == "Model catalog: endpoint create"  # not listed: still words
    assert action_label("brand_new.thing_done") == "Brand new: thing done"
