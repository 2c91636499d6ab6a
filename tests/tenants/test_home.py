import pytest
from django.test import Client

from tenants.middleware import SESSION_KEY
from tenants.models import Tenant
from tenants.services import tenant_set_status
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_log_in(db):
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_dashboard_shows_tenant_plan_and_what_it_allows(alice, login):
    page = login(alice).get("/").content.decode()
    assert "Acme Corp" in page and "Pro plan" in page and "Auto and MAX" in page


def test_free_plan_dashboard_says_auto_only(bob, login):
    page = login(bob).get("/").content.decode()
    assert "Globex" in page and "Auto only" in page


def test_admin_nav_has_team_and_keys_member_nav_does_not(alice, carol, login):
    admin_page = login(alice).get("/").content.decode()
    member_page = login(carol).get("/").content.decode()
    for link in ('href="/team/"', 'href="/api-keys/"', 'href="/invoices/"'):
        assert link in admin_page
        assert link not in member_page
    # Members see their own usage; admins see the tenant's.
    assert 'href="/chat/"' in member_page and 'href="/usage/"' in member_page
    assert 'href="/staff/"' not in admin_page and 'href="/finance/"' not in admin_page


def test_staff_and_finance_links_follow_permissions(platform_admin, finance, login):
    admin_page = login(platform_admin).get("/").content.decode()
    finance_page = login(finance).get("/").content.decode()
    assert 'href="/staff/"' in admin_page and 'href="/finance/"' in admin_page
    assert 'href="/finance/"' in finance_page and 'href="/staff/"' not in finance_page
    # Their home pages say what they can do, never that they should create or join a workspace.
    for page in (admin_page, finance_page):
        assert 'data-home="staff"' in page
        assert "organisation" not in page.lower() and "not in a workspace" not in page and "/signup/" not in page


def test_page_loads_htmx_from_local_static_files(alice, login):
    page = login(alice).get("/").content.decode()
    assert "/static/django_htmx/htmx-2.min.js" in page
    assert "https://" not in page.split("<body")[0]


def test_switching_to_own_tenant(alice, globex, login):
    MembershipFactory(user=alice, tenant=globex, role="member")
    client = login(alice)
    client.get("/")
    response = client.post("/tenants/switch/", {"tenant_id": globex.pk, "next": "/team/"})
    assert response.status_code == 302 and response["Location"] == "/team/"
    assert client.session[SESSION_KEY] == globex.pk
    assert "Globex" in client.get("/").content.decode()


@pytest.mark.parametrize("target", ["globex", "missing", "garbage"])
def test_switching_to_a_tenant_one_is_not_a_member_of_is_refused(alice, acme, globex, login, target):
    client = login(alice)
    client.get("/")
    tenant_id = {"globex": globex.pk, "missing": 987654, "garbage": "x"}[target]
    response = client.post("/tenants/switch/", {"tenant_id": tenant_id}, follow=True)
    assert "You are not a member of that workspace" in response.content.decode()
    assert client.session[SESSION_KEY] == acme.pk


def test_external_next_is_ignored_after_switching(alice, acme, login):
    response = login(alice).post("/tenants/switch/", {"tenant_id": acme.pk, "next": "https://evil.test/"})
    assert response["Location"] == "/"


def test_suspended_tenant_members_see_the_suspended_page_only(alice, acme, platform_admin, login):
    tenant_set_status(tenant=acme, status=Tenant.STATUS_SUSPENDED, actor=platform_admin)
    client = login(alice)
    for path in ("/", "/team/", "/api-keys/"):
        response = client.get(path)
        assert response.status_code == 403
        assert "Acme Corp is suspended" in response.content.decode()
    # Logging out still works.
    assert client.post("/logout/").status_code == 302


def test_a_member_of_a_suspended_tenant_can_switch_to_another(alice, acme, globex, platform_admin, login):
    MembershipFactory(user=alice, tenant=globex, role="member")
    tenant_set_status(tenant=acme, status=Tenant.STATUS_SUSPENDED, actor=platform_admin)
    client = login(alice)
    client.post("/tenants/switch/", {"tenant_id": acme.pk})
    client.post("/tenants/switch/", {"tenant_id": globex.pk})
    assert client.get("/").status_code == 200


def test_tenant_middleware_works_under_asgi(alice, acme, platform_admin):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    client = AsyncClient()
    client.force_login(alice)
    page = async_to_sync(client.get)("/")
    assert page.status_code == 200 and "Acme Corp" in page.content.decode()
    tenant_set_status(tenant=acme, status=Tenant.STATUS_SUSPENDED, actor=platform_admin)
    suspended = async_to_sync(client.get)("/")
    assert suspended.status_code == 403 and "Acme Corp is suspended" in suspended.content.decode()
