"""The limits pages in headless Chromium at 1280 and 375 px: reached from the API keys and Team pages, saved,
bad input shown on the form; nothing scrolls sideways, no console error or CSP violation, no serious axe-core
finding. Screenshots in artifacts/spend-*.png."""

import pytest

from tenants.models import ApiKey, Membership
from tests.browser import DESKTOP, PHONE, assert_accessible, overflow, screenshot, visit
from tests.factories import make_api_key

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_an_admin_limits_a_key_from_the_api_keys_page(browser_pages, alice, acme, width):
    key, _ = make_api_key(tenant=acme, user=alice, name="nightly-agent")
    page = browser_pages.open(alice, "/api-keys/", width=width)
    page.click(f"tr[data-api-key='{key.pk}'] a[data-limits-link]")
    page.wait_for_url(f"**/api-keys/{key.pk}/limits/")
    assert overflow(page) <= 0
    assert_accessible(page)
    screenshot(page, "spend-key-limits")
    browser_pages.allow(r"400 \(Bad Request\)")  # the form with errors answers 400
    page.fill("input[name=monthly_limit]", "-5")
    page.click(".limits-form button[type=submit]")
    assert "Enter a limit of 0 or more" in page.locator(".errorlist").first.inner_text()
    assert overflow(page) <= 0
    screenshot(page, "spend-key-limits-error")
    page.fill("input[name=monthly_limit]", "40")
    page.uncheck("input[name=allowed_tiers][value=max]")
    page.click(".limits-form button[type=submit]")
    page.wait_for_url("**/api-keys/")
    assert "$40.00/mo · AUTO" in page.locator(f"tr[data-api-key='{key.pk}'] a[data-limits-link]").inner_text()
    assert overflow(page) <= 0
    screenshot(page, "spend-api-keys")
    key = ApiKey.objects.get(pk=key.pk)
    assert (str(key.monthly_limit), key.allowed_tiers) == ("40.00", ["auto"])


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_an_admin_limits_a_member_from_the_team_page(browser_pages, alice, carol, acme, width):
    membership = Membership.objects.get(user=carol, tenant=acme)
    page = browser_pages.open(alice, "/team/", width=width)
    page.click(f"tr[data-membership='{membership.pk}'] a[data-limits-link]")
    page.wait_for_url(f"**/team/members/{membership.pk}/limits/")
    assert overflow(page) <= 0
    assert_accessible(page)
    screenshot(page, "spend-member-limits")
    page.fill("input[name=monthly_limit]", "15")
    page.click(".limits-form button[type=submit]")
    page.wait_for_url("**/team/")
    assert overflow(page) <= 0
    screenshot(page, "spend-team")
    assert str(Membership.objects.get(pk=membership.pk).monthly_limit) == "15.00"


def test_the_limits_page_answers_404_for_another_workspaces_key(browser_pages, alice, bob, globex):
    key, _ = make_api_key(tenant=globex, user=bob, name="theirs")
    page = browser_pages.open(alice, width=DESKTOP)
    browser_pages.allow(r"404 \(Not Found\)")
    visit(page, f"/api-keys/{key.pk}/limits/", status=404)
