"""/settings/: a tenant admin's workspace settings, the smart-Auto escalation dial (issue #11). Who may open it,
what it shows, what a save writes (the tenant's field and one audit row), what it refuses, and, in a real
Chromium, choosing a level and seeing it kept."""


import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from routing.smart import router
from tenants.middleware import SESSION_KEY
from tenants.models import AuditEvent, Plan, Tenant
from tenants.services import tenant_escalation_set
from tests.browser import PHONE, overflow, screenshot
from tests.factories import MembershipFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/settings/"


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _set(tenant, value):
    Tenant.objects.filter(pk=tenant.pk).update(auto_escalation=value)


def _escalation_rows():
    return AuditEvent.objects.filter(action="tenant.auto_escalation_change")


@pytest.fixture
def gail(globex):
    """An admin of globex, which is on the Free plan (no MAX)."""
    user = UserFactory(email="gail@globex.test")
    MembershipFactory(user=user, tenant=globex, role="admin")
    return user


# --- Who may open it -----------------------------------------------------------------------------------------

def test_anonymous_is_sent_to_log_in(db):
    response = Client().get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=/settings/")


def test_a_member_gets_403_and_cannot_post(acme, alice, carol):
    _set(acme, None)
    client = _client(carol)
    assert client.get(URL).status_code == 403
    assert client.post(URL, {"auto_escalation": "9"}).status_code == 403
    acme.refresh_from_db()
    assert acme.auto_escalation is None and not _escalation_rows().exists()


def test_the_nav_links_the_page_for_admins_only(alice, carol):
    assert 'href="/settings/"' in _client(alice).get("/").content.decode()
    assert 'href="/settings/"' not in _client(carol).get("/").content.decode()


# --- What it shows -------------------------------------------------------------------------------------------

def test_admin_sees_the_dial_with_each_levels_expected_share(acme, alice):
    _set(acme, None)
    response = _client(alice).get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Smart routing" in page and "Auto escalation" in page and "billed at MAX prices" in page
    assert "Plan default (level 5)" in page
    for level in range(1, 11):
        share = round(router().expected_share(level) * 100)
        option = page.split(f'data-level="{level}"')[1].split("</label>")[0]
        assert f"Level {level}" in option and f"about {share}% of Auto turns go to MAX" in option
    assert "about 25% of Auto turns go to MAX" in page.split('data-level="default"')[1].split("</label>")[0]
    assert "Auto never escalates" in page.split('data-level="0"')[1].split("</label>")[0]
    # The tenant follows its plan: "plan default" is the checked choice, and nothing else.
    assert page.count("checked") == 1 and 'value="default" checked' in page
    assert "In force: plan default (level 5): about 25% of Auto turns go to MAX." in page


def test_the_tenants_own_level_is_checked(acme, alice):
    _set(acme, 3)
    page = _client(alice).get(URL).content.decode()
    assert 'value="3" checked' in page and page.count("checked") == 1
    assert "In force: level 3: about 15% of Auto turns go to MAX." in page


def test_a_plan_without_max_shows_the_dial_disabled(globex, gail):
    page = _client(gail).get(URL).content.decode()
    assert "Your plan does not include MAX: Auto never escalates." in page
    assert '<fieldset class="dial" disabled' in page
    assert "Plan default (Off)" in page


def test_the_page_reads_little(acme, alice, django_assert_max_num_queries):
    client = _client(alice)
    client.get(URL)  # the router loads once per process; sessions warm up
    # All the layout's (user, membership, permissions for the nav, the tenant switcher): the dial reads the
    # tenant and plan the middleware loaded, and the shares come from the router, not the database.
    with django_assert_max_num_queries(5):
        assert client.get(URL).status_code == 200


# --- Saving --------------------------------------------------------------------------------------------------

def test_posting_a_level_sets_it_and_audits_before_and_after(acme, alice):
    _set(acme, None)
    response = _client(alice).post(URL, {"auto_escalation": "7"})
    assert response.status_code == 302 and response["Location"] == URL
    acme.refresh_from_db()
    assert acme.auto_escalation == 7 and acme.escalation_level == 7
    row = _escalation_rows().get()
    assert (row.actor, row.tenant, row.target_id) == (alice, acme, str(acme.pk))
    assert row.before == {"auto_escalation": None, "escalation_level": 5}
    assert row.after == {"auto_escalation": 7, "escalation_level": 7}


def test_after_a_save_the_page_says_so(acme, alice):
    response = _client(alice).post(URL, {"auto_escalation": "7"}, follow=True)
    page = response.content.decode()
    assert "Auto escalation saved: level 7: about 35% of Auto turns go to MAX." in page
    assert 'value="7" checked' in page


@pytest.mark.parametrize(("posted", "stored", "in_force"), [("default", None, 5), ("0", 0, 0), ("10", 10, 10)])
def test_plan_default_off_and_the_top_level_are_stored(acme, alice, posted, stored, in_force):
    _set(acme, 3)
    _client(alice).post(URL, {"auto_escalation": posted})
    acme.refresh_from_db()
    assert acme.auto_escalation == stored and acme.escalation_level == in_force
    assert _escalation_rows().get().after == {"auto_escalation": stored, "escalation_level": in_force}


@pytest.mark.parametrize("posted", ["abc", "11", "-1", "--1", "7.5", "1_0", "", " ", "٣", None])
def test_bad_input_shows_an_error_and_changes_nothing(acme, alice, posted):
    _set(acme, 3)
    response = _client(alice).post(URL, {} if posted is None else {"auto_escalation": posted})
    assert response.status_code == 400
    assert "Choose the plan default, Off, or a level from 1 to 10." in response.content.decode()
    acme.refresh_from_db()
    assert acme.auto_escalation == 3 and not AuditEvent.objects.exists()


def test_a_free_plan_tenants_post_is_refused(globex, gail):
    _set(globex, None)
    response = _client(gail).post(URL, {"auto_escalation": "5"})
    assert response.status_code == 400
    assert "Your plan does not include MAX" in response.content.decode()
    globex.refresh_from_db()
    assert globex.auto_escalation is None and globex.escalation_level == 0
    assert not AuditEvent.objects.exists()


def test_saving_the_same_level_again_writes_no_second_audit_row(acme, alice):
    client = _client(alice)
    client.post(URL, {"auto_escalation": "4"})
    client.post(URL, {"auto_escalation": "4"})
    assert _escalation_rows().count() == 1


def test_an_htmx_post_re_renders_the_section_with_a_message(acme, alice):
    response = _client(alice).post(URL, {"auto_escalation": "7"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    page = response.content.decode()
    assert page.lstrip().startswith('<section class="card" id="smart-routing"') and "<html" not in page
    assert "Auto escalation saved: level 7" in page and 'value="7" checked' in page
    acme.refresh_from_db()
    assert acme.auto_escalation == 7


def test_an_htmx_post_with_bad_input_shows_the_error_in_place(acme, alice):
    _set(acme, 3)
    response = _client(alice).post(URL, {"auto_escalation": "11"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200  # HTMX swaps only 2xx answers
    page = response.content.decode()
    assert "<html" not in page and "Choose the plan default, Off, or a level from 1 to 10." in page
    assert 'value="3" checked' in page
    acme.refresh_from_db()
    assert acme.auto_escalation == 3


def test_the_setting_changes_only_the_current_tenant(acme, alice):
    """The page has no object id: the tenant is the one the middleware resolved from the session."""
    initech = TenantFactory(slug="initech", name="Initech", plan=Plan.objects.get(slug="enterprise"))
    MembershipFactory(user=alice, tenant=initech, role="admin")
    _set(acme, None)
    client = _client(alice)
    session = client.session
    session[SESSION_KEY] = initech.pk
    session.save()
    client.post(URL, {"auto_escalation": "9"})
    acme.refresh_from_db()
    initech.refresh_from_db()
    assert initech.auto_escalation == 9 and acme.auto_escalation is None
    assert _escalation_rows().get().tenant == initech


def test_a_member_here_and_admin_elsewhere_gets_403_here(acme, carol):
    """carol admins another tenant, but her current tenant is acme, where she is a member."""
    other = TenantFactory(slug="hooli", name="Hooli")
    MembershipFactory(user=carol, tenant=other, role="admin")
    client = _client(carol)
    session = client.session
    session[SESSION_KEY] = acme.pk
    session.save()
    assert client.post(URL, {"auto_escalation": "9"}).status_code == 403
    assert not _escalation_rows().exists()


# --- The service ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("level", [11, -1, True, "5", 5.0])
def test_the_service_refuses_anything_but_none_or_0_to_10(acme, alice, level):
    with pytest.raises(ValidationError):
        tenant_escalation_set(tenant=acme, actor=alice, level=level)
    acme.refresh_from_db()
    assert acme.auto_escalation == 0 and not AuditEvent.objects.exists()


# --- In a real browser ---------------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_admin_chooses_level_7_in_the_browser_and_it_is_kept(browser_pages, acme, alice):
    # tests/browser.py: fails (never skips) without Chromium; no console error or CSP violation allowed.
    _set(acme, None)
    page = browser_pages.open(alice, "/settings/", width=PHONE)
    section = page.locator("#smart-routing")
    assert "Auto escalation" in section.inner_text()
    assert "about 35% of Auto turns go to MAX" in section.locator("[data-level='7']").inner_text()
    assert page.locator("input[name=auto_escalation][value=default]").is_checked()
    assert overflow(page) <= 0

    page.locator("[data-level='7']").click()
    page.locator("#smart-routing button[type=submit]").click()
    page.locator("#smart-routing .message-success").wait_for()
    assert "Auto escalation saved: level 7" in section.inner_text()
    assert page.url.endswith("/settings/")  # swapped in place by HTMX
    screenshot(page, "settings-level-7")

    page.reload()
    assert page.locator("input[name=auto_escalation][value='7']").is_checked()
    assert "In force: level 7" in page.locator("[data-setting]").inner_text()
    acme.refresh_from_db()
    assert acme.auto_escalation == 7
