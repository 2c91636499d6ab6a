"""The admin's alert settings: defaults, bad input (thresholds over 100% or unordered, webhook URLs that are
not https outside debug) as form errors that change nothing, the signing secret, the delivery log's access."""

import hmac

import pytest
from django.urls import reverse

from alerts import signing
from alerts.models import AlertEvent, AlertSettings, WebhookDelivery
from alerts.services import parse_thresholds
from billing.months import month_start
from tenants.models import AuditEvent


@pytest.fixture
def admin_client(client, alice):
    client.force_login(alice)
    return client


def test_the_page_shows_the_default_thresholds(admin_client):
    page = admin_client.get(reverse("alerts"))
    assert page.status_code == 200
    assert 'value="50, 80, 100"' in page.text and "of the <strong>$500.00</strong> monthly cap" in page.text


def test_saving_thresholds_and_a_webhook_audits_and_makes_a_secret(admin_client, acme, settings):
    settings.ALERTS_WEBHOOK_ALLOW_HTTP = False
    response = admin_client.post(reverse("alerts"), {"thresholds": "25, 75%, 90",
                                                     "webhook_url": "https://hooks.example.com/kc"})
    assert response.status_code == 302
    row = AlertSettings.objects.get(tenant=acme)
    assert row.thresholds == [25, 75, 90] and row.webhook_url == "https://hooks.example.com/kc"
    assert row.webhook_secret.startswith("whsec_") and len(row.webhook_secret) > 30
    [event] = AuditEvent.objects.filter(action="alerts.settings")
    assert event.before == {"thresholds": [50, 80, 100], "webhook_url": ""}
    assert admin_client.get(reverse("alerts")).text.count(row.webhook_secret) == 1
    old = row.webhook_secret
    admin_client.post(reverse("alerts_secret_rotate"))
    assert AlertSettings.objects.get(tenant=acme).webhook_secret != old


@pytest.mark.parametrize(("data", "field", "error"), [
    ({"thresholds": "50, 80, 120"}, "thresholds", "A threshold cannot be over 100% of the cap."),
    ({"thresholds": "80, 50, 100"}, "thresholds", "List the thresholds in increasing order"),
    ({"thresholds": "50, 50"}, "thresholds", "List the thresholds in increasing order"),
    ({"thresholds": "0, 50"}, "thresholds", "Enter percentages from 1 to 100"),
    ({"thresholds": "half"}, "thresholds", "Enter percentages from 1 to 100"),
    ({"thresholds": "50", "webhook_url": "http://hooks.example.com/kc"}, "webhook_url",
     "The webhook URL must start with https://."),
    ({"thresholds": "50", "webhook_url": "https://user:pw@hooks.example.com/"}, "webhook_url", "without a user"),
])
def test_bad_input_is_a_form_error_and_changes_nothing(admin_client, acme, settings, data, field, error):
    settings.ALERTS_WEBHOOK_ALLOW_HTTP = False
    AlertSettings.objects.create(tenant=acme, thresholds=[50, 80, 100], webhook_url="", webhook_secret="whsec_x")
    response = admin_client.post(reverse("alerts"), data)
    assert response.status_code == 400
    assert error in " ".join(response.context["form"].errors[field])
    row = AlertSettings.objects.get(tenant=acme)
    assert (row.thresholds, row.webhook_url, row.webhook_secret) == ([50, 80, 100], "", "whsec_x")
    assert not AuditEvent.objects.filter(action="alerts.settings").exists()


def test_bad_input_creates_no_settings_row(admin_client, acme):
    assert admin_client.post(reverse("alerts"), {"thresholds": "101"}).status_code == 400
    assert not AlertSettings.objects.filter(tenant=acme).exists()


def test_plain_http_is_accepted_in_debug_only(admin_client, acme, settings):
    settings.ALERTS_WEBHOOK_ALLOW_HTTP = settings.ALERTS_WEBHOOK_ALLOW_PRIVATE = True
    assert admin_client.post(reverse("alerts"), {"thresholds": "50",
                                                 "webhook_url": "http://127.0.0.1:9/hook"}).status_code == 302


def test_thresholds_parse():
    assert parse_thresholds("50,80 ,100") == [50, 80, 100]
    assert parse_thresholds("") == []


def test_a_plain_member_cannot_open_alerts(client, carol):
    client.force_login(carol)
    assert client.get(reverse("alerts")).status_code == 403


def test_the_delivery_page_shows_the_body_and_tries(admin_client, acme):
    event = AlertEvent.objects.create(tenant=acme, month=month_start(), threshold=80, cap=500, spend=401)
    delivery = WebhookDelivery.objects.create(tenant=acme, event=event, url="https://h.example/", body='{"a":1}',
                                              status="failed", attempts=1, last_error="HTTP 500")
    delivery.attempt_log.create(number=1, status_code=500, error="HTTP 500", duration_ms=12)
    page = admin_client.get(reverse("alerts_delivery", args=[delivery.pk]))
    assert page.status_code == 200 and "{&quot;a&quot;:1}" in page.text and "HTTP 500" in page.text


def test_a_replay_without_a_webhook_is_refused_and_sends_nothing(admin_client, acme):
    event = AlertEvent.objects.create(tenant=acme, month=month_start(), threshold=80, cap=500, spend=401)
    delivery = WebhookDelivery.objects.create(tenant=acme, event=event, url="https://h.example/", body="{}")
    response = admin_client.post(reverse("alerts_delivery_replay", args=[delivery.pk]), follow=True)
    assert "Set a webhook URL first." in response.text
    assert WebhookDelivery.objects.count() == 1


def test_the_signature_helper_matches_the_recipe():
    header = signing.header("whsec_k", b'{"x":1}', timestamp=1_700_000_000)
    assert header == "t=1700000000,v1=" + hmac.new(b"whsec_k", b'1700000000.{"x":1}', "sha256").hexdigest()
    assert signing.verify("whsec_k", b'{"x":1}', header, now=1_700_000_100)
    assert not signing.verify("whsec_k", b'{"x":2}', header, now=1_700_000_100)
    assert not signing.verify("whsec_k", b'{"x":1}', header, now=1_700_001_000)  # too old: a replayed call
