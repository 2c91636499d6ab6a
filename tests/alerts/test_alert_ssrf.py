"""Webhooks only reach public addresses: a private, loopback, link-local (metadata), multicast or reserved
target is a form error at save and a failed delivery (no connection) at send time, with
ALERTS_WEBHOOK_ALLOW_PRIVATE off; a try connects to the address it checked, keeping the Host header."""

import socket

import pytest
from django.urls import reverse

from alerts import addresses
from alerts.delivery import DONE, GAVE_UP, webhook_try
from alerts.models import AlertEvent, AlertSettings, WebhookDelivery
from billing.months import month_start
from tenants.models import AuditEvent


@pytest.fixture
def strict(settings):
    settings.ALERTS_WEBHOOK_ALLOW_HTTP = True  # so the address rule, not the scheme, is what refuses
    settings.ALERTS_WEBHOOK_ALLOW_PRIVATE = False
    return settings


def _resolving(monkeypatch, answers: dict[str, list[str]]):
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in answers[host]]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "https://localhost/hook", "https://10.1.2.3/hook", "https://192.168.0.10/hook",
    "https://172.16.0.1/hook", "https://169.254.169.254/latest/meta-data/", "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook", "https://[fe80::1]/hook", "https://0.0.0.0/hook", "https://224.0.0.1/hook",
    "https://240.0.0.1/hook", "https://100.64.0.1/hook", "https://internal.example/hook",
])
def test_a_private_address_is_a_form_error_at_save_and_changes_nothing(client, alice, acme, strict, monkeypatch,
                                                                        url):
    _resolving(monkeypatch, {"internal.example": ["93.184.215.14", "10.0.0.7"]})  # one private answer is enough
    client.force_login(alice)
    response = client.post(reverse("alerts"), {"thresholds": "50", "webhook_url": url})
    assert response.status_code == 400
    assert "private or internal address" in " ".join(response.context["form"].errors["webhook_url"])
    assert not AlertSettings.objects.filter(tenant=acme).exclude(webhook_url="").exists()
    assert not AuditEvent.objects.filter(action="alerts.settings").exists()


def test_a_public_address_is_accepted(client, alice, acme, strict, monkeypatch):
    _resolving(monkeypatch, {"hooks.example.com": ["93.184.215.14"]})
    client.force_login(alice)
    response = client.post(reverse("alerts"), {"thresholds": "50", "webhook_url": "https://hooks.example.com/kc"})
    assert response.status_code == 302
    assert AlertSettings.objects.get(tenant=acme).webhook_url == "https://hooks.example.com/kc"


def _delivery(tenant, url):
    AlertSettings.objects.create(tenant=tenant, webhook_url=url, webhook_secret="whsec_x")
    event = AlertEvent.objects.create(tenant=tenant, month=month_start(), threshold=80, cap=500, spend=401)
    return WebhookDelivery.objects.create(tenant=tenant, event=event, url=url, body='{"id":"evt_1"}')


@pytest.mark.django_db(transaction=True)
def test_a_delivery_to_a_private_address_fails_at_once_without_connecting(acme, receiver, strict):
    delivery = _delivery(acme, receiver.url)  # saved while allowed (or rebound since): refused at send time
    assert webhook_try(delivery_id=delivery.pk) == GAVE_UP
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.STATUS_FAILED and delivery.attempts == 1
    assert "private or internal address (127.0.0.1)" in delivery.last_error
    assert delivery.attempt_log.get().status_code is None
    assert receiver.calls == []


@pytest.mark.django_db(transaction=True)
def test_a_name_rebound_to_a_private_address_is_refused_at_send_time(acme, receiver, strict, monkeypatch):
    _resolving(monkeypatch, {"hooks.example.com": ["93.184.215.14"]})
    url = f"http://hooks.example.com:{receiver.server.server_address[1]}/hook"
    delivery = _delivery(acme, url)
    _resolving(monkeypatch, {"hooks.example.com": ["169.254.169.254"]})
    assert webhook_try(delivery_id=delivery.pk) == GAVE_UP
    assert "169.254.169.254" in WebhookDelivery.objects.get(pk=delivery.pk).last_error
    assert receiver.calls == []


@pytest.mark.django_db(transaction=True)
def test_a_try_connects_to_the_checked_address_and_keeps_the_host_header(acme, receiver, strict, monkeypatch):
    """The resolved address is pinned: the call goes to it while the Host header names the URL's host."""
    port = receiver.server.server_address[1]
    _resolving(monkeypatch, {"hooks.example.com": ["127.0.0.1"]})
    monkeypatch.setattr(addresses, "is_public", lambda address: True)  # let this one loopback answer through
    delivery = _delivery(acme, f"http://hooks.example.com:{port}/hook")
    assert webhook_try(delivery_id=delivery.pk) == DONE
    [call] = receiver.calls
    assert call["path"] == "/hook" and {k.lower(): v for k, v in call["headers"].items()}["host"] == f"hooks.example.com:{port}"


def test_the_pinned_target():
    target = addresses.target("https://93.184.215.14:8443/x?y=1")
    assert (target.url, target.sni_hostname) == ("https://93.184.215.14:8443/x?y=1", None)
    assert addresses.is_public("2606:4700::1111") and not addresses.is_public("fc00::1")
    with pytest.raises(addresses.AddressRefused, match="does not resolve"):
        addresses.target("https://no-such-host.invalid/")
