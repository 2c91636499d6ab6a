"""Small fixes of issue #15 (item 15), in Chromium at 1280 and 375 px: the header's Sign up button is readable
(contrast at least 4.5:1), the last admin of a workspace cannot demote or remove themselves through the team
page, the activity log names actions in words, and Django's admin has the site's icon."""

import re

import pytest

from tenants.models import AuditEvent, Membership
from tests.browser import DESKTOP, PHONE, overflow, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = pytest.mark.parametrize("width", [DESKTOP, PHONE])


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = map(channel, rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    """WCAG 2 contrast ratio of two sRGB colours."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _rgb(css: str) -> tuple[int, int, int]:
    return tuple(int(float(x)) for x in re.findall(r"[\d.]+", css)[:3])


def test_contrast_matches_the_wcag_examples():
    assert round(contrast((0, 0, 0), (255, 255, 255)), 1) == 21.0
    assert round(contrast((0x5b, 0x66, 0x75), (0x2f, 0x8f, 0x46)), 1) == 1.4  # the old grey on green: 1.3-1.4:1


@WIDTHS
def test_the_sign_up_button_is_readable(browser_pages, width):
    page = browser_pages.open(None, "/login/", width=width)
    button = page.locator("header.topbar a.button[href='/signup/']")
    assert button.is_visible()
    colour, background = button.evaluate("el => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor]")
    assert contrast(_rgb(colour), _rgb(background)) >= 4.5, (colour, background)
    button.hover()
    colour, background = button.evaluate("el => [getComputedStyle(el).color, getComputedStyle(el).backgroundColor]")
    assert contrast(_rgb(colour), _rgb(background)) >= 4.5, ("hover", colour, background)
    screenshot(page, "header-sign-up", full_page=False)


@WIDTHS
def test_the_last_admin_cannot_demote_or_remove_themselves_from_the_team_page(browser_pages, alice, carol, width):
    page = browser_pages.open(alice, "/team/", width=width)
    mine = Membership.objects.get(user=alice)
    row = f"#team-panel tr[data-membership='{mine.pk}']"
    page.select_option(f"{row} select[name=role]", "member")
    page.click(f"{row} form[hx-post$='/role/'] button")
    page.locator("#team-panel .message-error").wait_for()
    assert "at least one admin" in page.locator("#team-panel .message-error").inner_text()
    assert page.locator(f"{row} select[name=role]").input_value() == "admin"  # the page shows the truth
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm's "Remove ...?"
    page.click(f"{row} form[hx-post$='/remove/'] button")
    page.locator("#team-panel .message-error:has-text('last admin')").wait_for()
    assert page.locator(row).count() == 1 and overflow(page) <= 0
    screenshot(page, "team-last-admin")
    mine.refresh_from_db()
    assert mine.role == "admin"
    assert not AuditEvent.objects.filter(action__startswith="membership.").exists()


@WIDTHS
def test_the_activity_log_names_actions_in_words(browser_pages, alice, carol, width):
    page = browser_pages.open(alice, "/team/", width=width)
    carols = f"#team-panel tr[data-membership='{Membership.objects.get(user=carol).pk}']"
    page.select_option(f"{carols} select[name=role]", "admin")
    page.click(f"{carols} form[hx-post$='/role/'] button")
    page.locator("#team-panel .message-success").wait_for()
    page.goto("/team/audit/")
    whats = page.locator("td[data-action]").all_inner_texts()
    assert [w.removeprefix("What: ").strip() for w in whats] == ["Member role changed"]
    assert not any(re.search(r"\b[a-z_]+\.[a-z_]+\b", w) for w in whats)
    screenshot(page, "activity-log")
    page.click("td >> a:text('details')")
    assert page.locator("h1").inner_text() == "Member role changed"


def test_django_admin_has_the_site_icon(browser_pages, platform_admin):
    asked = []
    page = browser_pages.open(platform_admin)
    page.on("request", lambda request: asked.append(request.url))
    for path in ("/admin/", "/admin/tenants/tenant/"):
        response = page.goto(path)
        assert response.status == 200, path
        icon = page.locator("link[rel=icon]")
        assert icon.count() == 1 and icon.get_attribute("href").endswith("favicon.svg")
        assert page.request.get(icon.get_attribute("href")).status == 200
    assert not [url for url in asked if url.endswith("/favicon.ico")]
    screenshot(page, "admin-with-icon", full_page=False)
