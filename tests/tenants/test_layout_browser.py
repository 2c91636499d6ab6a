"""The dashboard in a real headless Chromium: usable at 375px wide without sideways scrolling, and the HTMX
inline actions work. Skipped when no Chromium is installed."""

import os
import shutil

import pytest
from django.conf import settings as django_settings
from django.test import Client

from tests.factories import make_api_key

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine"),
]


@pytest.fixture
def open_pages(server_url):
    """open_pages(*users) -> one 375px-wide Playwright page per user, logged in as them (None: anonymous).

    Sessions are made before Playwright starts: its sync API runs an event loop in this thread, and ORM calls
    made while it runs would use a separate connection that the test teardown never closes.
    """
    from playwright.sync_api import sync_playwright

    running = []

    def make(*users):
        cookies = []
        for user in users:
            if user is None:
                cookies.append(None)
                continue
            client = Client()
            client.force_login(user)
            cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
            cookies.append({"name": cookie.key, "value": cookie.value, "url": server_url})
        manager = sync_playwright().start()
        browser = manager.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        running.append((manager, browser))
        pages = []
        for cookie in cookies:
            context = browser.new_context(viewport={"width": 375, "height": 812}, base_url=server_url)
            if cookie:
                context.add_cookies([cookie])
            page = context.new_page()
            page.set_default_timeout(10_000)
            pages.append(page)
        return pages

    yield make
    for manager, browser in running:
        browser.close()
        manager.stop()


def _visit(page, path: str) -> None:
    response = page.goto(path)
    assert response.status == 200, (path, response.status)
    assert page.locator("header.topbar").count() == 1, path


def _overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def test_pages_fit_a_375px_screen(open_pages, alice, carol, acme, platform_admin):
    make_api_key(tenant=acme, user=alice, name="a rather long key name for a narrow screen")
    admin_page, staff_page, anonymous = open_pages(alice, platform_admin, None)
    for path in ("/", "/team/", "/api-keys/", "/team/audit/", "/password/change/"):
        _visit(admin_page, path)
        assert _overflow(admin_page) <= 0, path
    for path in ("/staff/", "/staff/audit/"):
        _visit(staff_page, path)
        assert _overflow(staff_page) <= 0, path
    for path in ("/login/", "/signup/", "/password/reset/"):
        _visit(anonymous, path)
        assert _overflow(anonymous) <= 0, path


def test_header_menus_open_inside_the_screen(open_pages, alice):
    (page,) = open_pages(alice)
    _visit(page, "/")
    for menu in ("tenant", "user"):
        page.click(f"details[data-menu={menu}] > summary")
        box = page.locator(f"details[data-menu={menu}] .menu-panel").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, menu
        page.click(f"details[data-menu={menu}] > summary")
    assert _overflow(page) <= 0


def test_htmx_creates_a_key_in_place(open_pages, alice):
    (page,) = open_pages(alice)
    _visit(page, "/api-keys/")
    page.fill("#keys-panel input[name=name]", "from-the-browser")
    page.click("#keys-panel form[hx-post$='/api-keys/new/'] button")
    secret = page.locator("[data-new-secret] code").inner_text()
    assert secret.startswith("kc-")
    assert page.url.endswith("/api-keys/")  # swapped in place, no navigation
    assert _overflow(page) <= 0
