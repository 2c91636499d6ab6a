"""The dashboard in a real headless Chromium (tests/browser.py): usable at 375px wide without sideways scrolling,
the header menus open inside the screen, and the HTMX inline actions work. Every page opened logs no console
error and no CSP violation; screenshots go to artifacts/."""

import pytest

from tests.browser import PHONE, overflow, screenshot, visit
from tests.factories import make_api_key

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _visit(page, path: str) -> None:
    visit(page, path)
    assert page.locator("header.topbar").count() == 1, path


def test_pages_fit_a_375px_screen(browser_pages, alice, carol, acme, platform_admin):
    make_api_key(tenant=acme, user=alice, name="a rather long key name for a narrow screen")
    admin_page = browser_pages.open(alice, width=PHONE)
    staff_page = browser_pages.open(platform_admin, width=PHONE)
    anonymous = browser_pages.open(None, width=PHONE)
    for page, paths in ((admin_page, ("/", "/team/", "/api-keys/", "/team/audit/", "/password/change/")),
                        (staff_page, ("/staff/", "/staff/audit/")),
                        (anonymous, ("/login/", "/signup/", "/password/reset/"))):
        for path in paths:
            _visit(page, path)
            assert overflow(page) <= 0, path
            screenshot(page, "layout" + path.rstrip("/").replace("/", "-"))


def test_header_menus_open_inside_the_screen(browser_pages, alice):
    page = browser_pages.open(alice, "/", width=PHONE)
    for menu in ("tenant", "user"):
        page.click(f"details[data-menu={menu}] > summary")
        box = page.locator(f"details[data-menu={menu}] .menu-panel").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE, menu
        screenshot(page, f"layout-menu-{menu}", full_page=False)
        page.click(f"details[data-menu={menu}] > summary")
    assert overflow(page) <= 0


def test_htmx_creates_a_key_in_place(browser_pages, alice):
    page = browser_pages.open(alice, "/api-keys/", width=PHONE)
    page.fill("#keys-panel input[name=name]", "from-the-browser")
    page.click("#keys-panel form[hx-post$='/api-keys/new/'] button")
    secret = page.locator("[data-new-secret] code").inner_text()
    assert secret.startswith("kc-")
    assert page.url.endswith("/api-keys/")  # swapped in place, no navigation
    assert overflow(page) <= 0
