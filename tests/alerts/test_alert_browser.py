"""The budget alerts page in headless Chromium at 1280 and 375 px: reached from Settings, bad thresholds shown on
the form, saved, the delivery log with a replay; nothing scrolls sideways, no console error or CSP violation, no
serious axe-core finding. Screenshots in artifacts/alerts-*.png."""

import pytest

from alerts.models import AlertEvent, AlertSettings, WebhookDelivery
from billing.months import month_start
from tests.browser import DESKTOP, PHONE, assert_accessible, overflow, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_an_admin_sets_thresholds_and_sees_the_delivery_log(browser_pages, alice, acme, width):
    AlertSettings.objects.create(tenant=acme, webhook_url="https://hooks.example.com/a-rather-long/path/for/kiwiclaw",
                                 webhook_secret="whsec_" + "x" * 43)
    event = AlertEvent.objects.create(tenant=acme, month=month_start(), threshold=80, cap=500, spend="401.5")
    WebhookDelivery.objects.create(tenant=acme, event=event, url="https://hooks.example.com/a-rather-long/path",
                                   body="{}", status="failed", attempts=6, last_status_code=500,
                                   last_error="HTTP 500")
    page = browser_pages.open(alice, "/settings/", width=width)
    page.click("[data-alerts-link] a")
    page.wait_for_url("**/alerts/")
    assert overflow(page) <= 0
    assert_accessible(page)
    screenshot(page, "alerts-page")
    browser_pages.allow(r"400 \(Bad Request\)")  # the form with errors answers 400
    page.fill("input[name=thresholds]", "80, 50")
    page.click(".alerts-form button[type=submit]")
    assert "increasing order" in page.locator(".errorlist").first.inner_text()
    assert overflow(page) <= 0
    screenshot(page, "alerts-error")
    page.fill("input[name=thresholds]", "50, 90, 100")
    page.click(".alerts-form button[type=submit]")
    page.wait_for_url("**/alerts/")
    assert page.locator(".alert-thresholds .badge").all_inner_texts() == ["50%", "90%", "100%"]
    page.click("tr[data-delivery] a")
    page.wait_for_url("**/alerts/deliveries/*/")
    assert overflow(page) <= 0
    screenshot(page, "alerts-delivery")
    assert AlertSettings.objects.get(tenant=acme).thresholds == [50, 90, 100]
