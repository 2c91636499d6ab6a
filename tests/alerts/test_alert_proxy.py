"""An alert raised by a /v1 request: the proxy process writes the usage row, its settle sees the mark, the
worker sends the email and the webhook."""

from decimal import Decimal

import openai
import pytest
from django.core import mail

from alerts.models import AlertEvent, AlertSettings
from billing.budget import cached_month_spend
from tenants.models import Membership
from tests.factories import make_api_key

from .conftest import spend_to, wait_until
from .test_alert_delivery import SECRET, verify

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_proxy_request_crossing_a_threshold_sends_its_alert(server, globex, bob, receiver, alerts_settings,
                                                              celery_worker, chat_redis):
    Membership.objects.filter(user=bob, tenant=globex).update(role="admin")
    AlertSettings.objects.create(tenant=globex, webhook_url=receiver.url, webhook_secret=SECRET)
    spend_to(globex, Decimal("2.49999"))  # a hair under 50% of the Free plan's $5.00 (the request bills ~$0.00006)
    cached_month_spend(tenant_id=globex.pk)
    secret = make_api_key(tenant=globex, user=bob, name="bob")[1]
    client = openai.OpenAI(api_key=secret, base_url=f"{server.url}/v1", max_retries=0, timeout=20)
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hello there"}])
    [call] = receiver.wait_for(1)
    assert receiver.bodies()[0]["data"]["threshold_percent"] == 50
    assert verify(SECRET, call["body"], call["headers"]["KiwiClaw-Signature"])
    wait_until(lambda: len(mail.outbox) == 1, what="the email")
    assert mail.outbox[0].to == ["bob@globex.test"]
    assert list(AlertEvent.objects.values_list("threshold", flat=True)) == [50]
