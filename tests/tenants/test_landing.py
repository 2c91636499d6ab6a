"""Where people land (issue #15, item 10): members in the chat after logging in, platform admins on /staff/,
finance on /finance/; someone in no workspace who opens a workspace page gets a clear page (never the view's
404, which DEBUG would show as Django's debug page); the UI says "workspace" for a tenant, never tenant or
organisation. The browser half logs in through the real form at 1280 and 375 px."""

from html.parser import HTMLParser

import pytest
from django.test import Client

from tenants.models import Tenant
from tenants.services import invite_create, tenant_set_status
from tests.browser import DESKTOP, PHONE, assert_accessible, overflow, screenshot
from tests.factories import DEMO_PASSWORD, MembershipFactory, UserFactory, make_api_key

WORKSPACE_PAGES = ("/chat/", "/usage/", "/invoices/", "/team/", "/api-keys/", "/settings/", "/alerts/")


def _login_form(client, user, next_url=None):
    data = {"username": user.email, "password": DEMO_PASSWORD}
    if next_url:
        data["next"] = next_url
    return client.post("/login/", data)


# --- After logging in ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_member_lands_in_the_chat(carol):
    assert _login_form(Client(), carol)["Location"] == "/chat/"


@pytest.mark.django_db
def test_a_platform_admin_lands_on_the_staff_console_even_when_also_a_member(platform_admin, acme):
    assert _login_form(Client(), platform_admin)["Location"] == "/staff/"
    MembershipFactory(user=platform_admin, tenant=acme, role="admin")
    assert _login_form(Client(), platform_admin)["Location"] == "/staff/"


@pytest.mark.django_db
def test_finance_lands_on_finance(finance):
    assert _login_form(Client(), finance)["Location"] == "/finance/"


@pytest.mark.django_db
def test_someone_in_no_workspace_lands_on_the_dashboard(db):
    loner = UserFactory(email="loner@example.test")
    assert _login_form(Client(), loner)["Location"] == "/"


@pytest.mark.django_db
def test_a_next_page_wins_over_the_landing(alice):
    assert _login_form(Client(), alice, next_url="/team/")["Location"] == "/team/"


@pytest.mark.django_db
def test_a_signed_in_visitor_of_the_login_page_is_sent_to_their_landing(alice, finance, login):
    assert login(alice).get("/login/")["Location"] == "/chat/"
    assert login(finance).get("/login/")["Location"] == "/finance/"


# --- Workspace pages without a workspace ---------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("path", WORKSPACE_PAGES)
def test_a_platform_admin_in_no_workspace_gets_a_clear_page(platform_admin, login, settings, path):
    settings.DEBUG = True  # where a 404 would be Django's technical page
    response = login(platform_admin).get(path)
    page = response.content.decode()
    assert response.status_code == 403
    assert "data-no-workspace" in page and "not a member of one" in page
    assert 'href="/staff/"' in page and 'href="/finance/"' in page  # a superuser holds the finance permission
    assert "Page not found" not in page and "URLconf" not in page


@pytest.mark.django_db
def test_finance_in_no_workspace_is_pointed_at_finance_only(finance, login):
    page = login(finance).get("/chat/").content.decode()
    assert 'href="/finance/"' in page and 'href="/staff/"' not in page.split("data-no-workspace")[1]


@pytest.mark.django_db
def test_a_member_still_reaches_the_workspace_pages_and_anonymous_still_logs_in(alice, login):
    client = login(alice)
    for path in WORKSPACE_PAGES:
        assert client.get(path).status_code == 200, path
    response = Client().get("/chat/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


# --- One word for a tenant: workspace -------------------------------------------------------------------------

class _VisibleText(HTMLParser):
    """The text a person reads or hears: text nodes outside script/style, and the attributes read aloud or shown
    (aria-label, title, placeholder, alt, button values)."""

    SPOKEN = ("aria-label", "title", "placeholder", "alt")

    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        attrs = dict(attrs)
        self.parts += [attrs[a] or "" for a in self.SPOKEN if a in attrs]
        if tag == "input" and attrs.get("type") in ("submit", "button"):
            self.parts.append(attrs.get("value") or "")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _visible_text(html: str) -> str:
    parser = _VisibleText()
    parser.feed(html)
    return " ".join(parser.parts)


def _assert_one_word(html: str, where: str) -> None:
    text = _visible_text(html).lower()
    for word in ("tenant", "organisation", "organization"):
        assert word not in text, f"{where} says {word!r}"


@pytest.mark.django_db
def test_every_page_of_the_workspace_says_workspace(alice, carol, acme, globex, login, platform_admin):
    MembershipFactory(user=alice, tenant=globex, role="member")  # the switcher lists two workspaces
    make_api_key(tenant=acme, user=alice, name="robot")
    client = login(alice)
    for path in ("/", "/team/", "/team/audit/", "/api-keys/", "/password/change/", "/password/change/done/"):
        response = client.get(path)
        assert response.status_code == 200, path
        _assert_one_word(response.content.decode(), path)
    _, token = invite_create(tenant=acme, role="member", actor=alice)
    _assert_one_word(Client().get(f"/invite/{token}/").content.decode(), "the invite page")
    for path in ("/login/", "/signup/", "/password/reset/"):
        _assert_one_word(Client().get(path).content.decode(), path)
    # Messages and refusals too.
    switched = client.post("/tenants/switch/", {"tenant_id": 987654}, follow=True)
    _assert_one_word(switched.content.decode(), "the refused switch")
    last_admin = client.post(f"/team/members/{alice.memberships.get(tenant=acme).pk}/remove/", follow=True)
    assert "This is the workspace's last admin" in _visible_text(last_admin.content.decode())
    _assert_one_word(last_admin.content.decode(), "the last-admin refusal")
    signup = Client().post("/signup/", {"email": "x@example.test", "password": "a-long-unusual-passphrase",
                                        "tenant_name": "", "tenant_slug": "x"})
    assert "Workspace name" in signup.content.decode()
    _assert_one_word(signup.content.decode(), "the sign-up form with errors")
    _assert_one_word(login(platform_admin).get("/").content.decode(), "a platform admin's home")
    _assert_one_word(login(platform_admin).get("/chat/").content.decode(), "the no-workspace page")
    tenant_set_status(tenant=acme, status=Tenant.STATUS_SUSPENDED, actor=platform_admin)
    _assert_one_word(login(carol).get("/").content.decode(), "the suspended page")


def test_visible_text_reads_text_and_spoken_attributes_only():
    html = ('<p data-menu="tenant">Your workspace</p><script>var tenant = 1;</script>'
            '<button aria-label="Switch tenant">x</button>')
    assert "data-menu" not in _visible_text(html) and "var tenant" not in _visible_text(html)
    assert "Switch tenant" in _visible_text(html)


# --- In the browser ------------------------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_logging_in_through_the_form_lands_each_person_where_they_work(browser_pages, alice, platform_admin,
                                                                       finance, width):
    for user, landing, name in ((alice, "/chat/", "member"), (platform_admin, "/staff/", "staff"),
                                (finance, "/finance/", "finance")):
        page = browser_pages.open(None, "/login/", width=width)
        page.fill("input[name=username]", user.email)
        page.fill("input[name=password]", DEMO_PASSWORD)
        with page.expect_navigation():
            page.click("form[action='/login/'] button[type=submit]")
        assert page.url.endswith(landing), (name, page.url)
        assert overflow(page) <= 0
        screenshot(page, f"landing-{name}")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_an_admin_opening_the_chat_without_a_workspace_sees_where_to_go(browser_pages, platform_admin, width):
    browser_pages.allow(r"status of 403")  # the page is a 403, which Chromium logs
    page = browser_pages.open(platform_admin, "/chat/", width=width, status=403)
    assert page.locator("[data-no-workspace] h1").inner_text() == "This page belongs to a workspace"
    assert_accessible(page)
    page.click("[data-no-workspace] a[href='/staff/']")
    page.wait_for_url("**/staff/")
    page.go_back()
    assert overflow(page) <= 0
    screenshot(page, "landing-no-workspace")
