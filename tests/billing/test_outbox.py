"""The outbox itself (billing/outbox.py): where an entry is kept, and that draining applies it exactly once."""

import json
import socket

import pytest

from billing import outbox
from billing.models import UsageRecord
from routing import metering
from routing.types import Prices, RouteResult, Usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def spool(settings, tmp_path):
    settings.OUTBOX_SPOOL_DIR = str(tmp_path)
    settings.OUTBOX_RETRY_INTERVAL = 3600  # the test drains by hand
    return tmp_path


def _result(output_tokens=12) -> RouteResult:
    from decimal import Decimal

    prices = Prices(input=Decimal("0.6"), output=Decimal("3"), cache_write=Decimal("0.6"), cache_read=Decimal("0.1"))
    return RouteResult(text="kiwis", finish_reason="stop", tier="auto", endpoint="kimi-k2.5", provider="moonshot",
                       upstream_model="kimi-k2.5", usage=Usage(input_tokens=5, output_tokens=output_tokens),
                       cost=Decimal("0.000039"), prices=prices, requested_tier="auto")


def _keep(tenant, key, result=None):
    metering.record_later(tenant=tenant, source="api", key=key, user_id=None, api_key_id=None,
                          result=result or _result())


def test_an_entry_is_applied_once_however_often_it_is_drained(acme, spool, redis_client):
    _keep(acme, "api:req-1")
    assert outbox.pending("api:req-1") and outbox.depth() == 1
    assert list(outbox.spool_dir().glob("*.json")) and redis_client.hexists(outbox.HASH_KEY, "api:req-1")

    assert outbox.drain()["applied"] == 1
    row = UsageRecord.objects.get(key="api:req-1")
    assert row.output_tokens == 12 and row.tenant == acme and row.cost > 0
    assert outbox.depth() == 0 and not outbox.pending("api:req-1")

    _keep(acme, "api:req-1")  # the same record again (a second writer, a redelivery)
    outbox.drain()
    assert UsageRecord.objects.filter(key="api:req-1").count() == 1


def test_with_redis_unreachable_the_spool_alone_keeps_the_entry(acme, spool, settings, redis_client):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    settings.REDIS_TIMEOUT = 0.5
    _keep(acme, "api:req-2")
    assert outbox.pending("api:req-2") and outbox.depth() == 1
    assert outbox.drain()["applied"] == 1
    assert UsageRecord.objects.filter(key="api:req-2").count() == 1
    assert outbox.depth() == 0


def test_an_entry_that_can_never_apply_is_moved_aside_not_retried_forever(acme, spool, redis_client):
    _keep(acme, "api:req-3")
    path = next(outbox.spool_dir().glob("*.json"))
    entry = json.loads(path.read_text())
    entry["payload"]["tenant_id"] = 999_999  # a tenant that does not exist
    path.write_text(json.dumps(entry))
    redis_client.hset(outbox.HASH_KEY, "api:req-3", json.dumps(entry))
    assert outbox.drain()["dead"] == 1
    assert outbox.depth() == 0 and not UsageRecord.objects.filter(key="api:req-3").exists()
    assert (outbox.spool_dir() / "dead" / path.name).exists()


def test_an_entry_keeps_the_end_user_id(acme, spool, redis_client):
    metering.record_later(tenant=acme, source="api", key="api:req-eu", user_id=None, api_key_id=None,
                          result=_result(), end_user="cust-1")
    assert outbox.drain()["applied"] == 1
    assert UsageRecord.objects.get(key="api:req-eu").end_user == "cust-1"
