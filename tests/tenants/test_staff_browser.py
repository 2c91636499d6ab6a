"""Staff actions in a real Chromium at 1280 and 375 px: suspend and plan change ask first, naming the workspace and
the change; the staff pages link each other (routing included); the routing table's headers never break inside a
word; the audit log reads in words. Screenshots: artifacts/staff-*-<width>.png."""

import pytest

from tenants.models import AuditEvent
from tests.browser import DESKTOP, PHONE, overflow, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# For each header cell: the words whose letters sit on more than one line (a word broken mid-word).
_BROKEN_WORDS = """
(cells) => cells.flatMap((cell) => {
  const broken = [];
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const match of node.textContent.matchAll(/[^\\s\\/]+/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
      if (tops.size > 1) broken.push(match[0]);
    }
  }
  return broken;
})
"""


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_suspend_asks_first_naming_the_workspace(browser_pages, acme, platform_admin, width):
    page = browser_pages.open(platform_admin, "/staff/", width=width)
    page.locator("tr[data-tenant=acme] button:has-text('Suspend')").click()
    confirm = page.locator("[data-confirm=suspend]")
    assert "Acme Corp" in confirm.inner_text() and "active → suspended" in confirm.inner_text()
    assert page.locator("h1").inner_text() == "Suspend Acme Corp?"
    assert not AuditEvent.objects.exists()
    assert overflow(page) <= 0
    screenshot(page, "staff-confirm-suspend")
    page.get_by_role("button", name="Suspend Acme Corp").click()
    page.wait_for_url("**/staff/")
    assert "Acme Corp suspended." in page.inner_text("body")
    acme.refresh_from_db()
    assert not acme.is_active


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_a_plan_change_asks_first_and_cancel_changes_nothing(browser_pages, acme, platform_admin, width):
    page = browser_pages.open(platform_admin, "/staff/", width=width)
    page.select_option(f"#plan-{acme.pk}", "enterprise")
    page.locator("tr[data-tenant=acme] button:has-text('Change')").click()
    assert page.locator("h1").inner_text() == "Move Acme Corp to Enterprise?"
    assert "plan Pro → Enterprise" in page.locator("[data-confirm=plan]").inner_text()
    screenshot(page, "staff-confirm-plan")
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url("**/staff/")
    acme.refresh_from_db()
    assert acme.plan.slug == "pro" and not AuditEvent.objects.exists()


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_routing_is_in_the_staff_navigation_and_its_headers_keep_words_whole(browser_pages, acme, platform_admin,
                                                                             width):
    page = browser_pages.open(platform_admin, "/staff/", width=width)
    page.locator("nav.staff-nav").get_by_role("link", name="Routing").click()
    page.wait_for_url("**/staff/routing/")
    assert page.locator("nav.staff-nav a[aria-current=page]").inner_text() == "Routing"
    if width == DESKTOP:  # at 375 px the table stacks its cells and hides the header row
        headers = page.locator("table th")
        assert headers.count() >= 7
        assert headers.evaluate_all(_BROKEN_WORDS) == []
    assert overflow(page) <= 0
    screenshot(page, "staff-routing")


def test_the_audit_log_reads_in_words(browser_pages, acme, globex, platform_admin):
    from tenants.services import tenant_set_status

    tenant_set_status(tenant=globex, status="suspended", actor=platform_admin)
    page = browser_pages.open(platform_admin, "/staff/audit/", width=DESKTOP)
    what = page.locator("td[data-action='tenant.suspend']")
    assert what.inner_text() == "Workspace suspended"
    assert page.locator("nav.staff-nav a[aria-current=page]").inner_text() == "Audit log"
    screenshot(page, "staff-audit")


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_the_plan_editor_reviews_a_change_before_saving_it(browser_pages, acme, platform_admin, width):
    from decimal import Decimal

    from tenants.models import Plan

    browser_pages.allow(r"status of 400 \(Bad Request\)")  # the refused form answers 400, on purpose
    pro = Plan.objects.get(slug="pro")
    page = browser_pages.open(platform_admin, "/staff/", width=width)
    page.locator("nav.staff-nav").get_by_role("link", name="Plans").click()
    page.get_by_role("link", name="Edit Pro").click()
    assert "1 workspace is on this plan" in page.locator("[data-fee-rule]").inner_text()
    page.fill("#id_monthly_fee", "-5")
    page.get_by_role("button", name="Review the change").click()
    assert "Cannot be negative." in page.locator("[data-field=monthly_fee]").inner_text()
    page.fill("#id_monthly_fee", "59")
    page.fill("#id_rpm_key", "200")
    page.get_by_role("button", name="Review the change").click()
    assert "affects 1 workspace on Pro" in page.locator("[data-affects]").inner_text()
    assert page.locator("tr[data-change]").count() == 2
    assert overflow(page) <= 0
    screenshot(page, "staff-plan-review")
    assert Plan.objects.get(pk=pro.pk).monthly_fee == Decimal("49.00")  # nothing saved yet
    page.get_by_role("button", name="Save the change").click()
    page.wait_for_url("**/staff/plans/")
    assert "Plan Pro saved." in page.inner_text("body")
    pro.refresh_from_db()
    assert (pro.monthly_fee, pro.rpm_key) == (Decimal("59.00"), 200)
    assert AuditEvent.objects.get().action == "plan.change"
    screenshot(page, "staff-plans")
