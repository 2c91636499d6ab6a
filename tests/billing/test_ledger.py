"""The usage ledger: what a row holds, idempotency on the key, append-only in the database."""

import os
import subprocess
import sys
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models.deletion import ProtectedError

from billing.models import UsageRecord
from tests.billing.conftest import hand_cost, record_usage
from tests.factories import make_api_key


def test_usage_row_holds_prices_cost_and_billed_with_plan_markup(acme, alice):
    # Opus: 1,234 in, 567 out, 10,000 cache read, 2,000 cache write; Pro plan markup 30%.
    row = record_usage(acme, endpoint="claude-opus-4-6", input_tokens=1234, output_tokens=567,
                       cache_read_tokens=10_000, cache_write_tokens=2_000, user_id=alice.pk)
    row.refresh_from_db()
    expected_cost = Decimal("0.006170") + Decimal("0.014175") + Decimal("0.005") + Decimal("0.0125")
    assert row.cost == expected_cost == Decimal("0.0378450000")
    assert row.billed == Decimal("0.0491985000")  # × 1.30
    assert row.markup_percent == Decimal("30.00")
    assert (row.price_input, row.price_output, row.price_cache_write, row.price_cache_read) == (
        Decimal("5"), Decimal("25"), Decimal("6.25"), Decimal("0.5"))
    assert row.user_id == alice.pk and row.recorded_at is not None


def test_a_single_token_of_the_cheapest_price_is_kept_exactly(acme):
    row = record_usage(acme, endpoint="kimi-k2.5", input_tokens=0, output_tokens=0, cache_read_tokens=1)
    row.refresh_from_db()
    assert row.cost == Decimal("0.0000001000")
    assert row.billed == Decimal("0.0000001300")


def test_same_key_twice_leaves_one_row_and_returns_the_first(acme):
    first = record_usage(acme, key="chat:42", input_tokens=100)
    second = record_usage(acme, key="chat:42", input_tokens=999_999)
    assert second.pk == first.pk
    assert second.input_tokens == 100
    assert UsageRecord.objects.filter(key="chat:42").count() == 1


def test_same_key_from_another_tenant_is_refused(acme, globex):
    record_usage(acme, key="api:req-1", source="api")
    with pytest.raises(ValidationError):
        record_usage(globex, key="api:req-1", source="api")
    assert UsageRecord.objects.get(key="api:req-1").tenant_id == acme.pk


@pytest.mark.parametrize("bad", [
    {"source": "web", "key": "web:1"},
    {"key": "api:1"},  # key does not match source chat
    {"input_tokens": -1},
    {"output_tokens": 1.5},
    {"cost": 0.01},  # float money
    {"cost": Decimal("-0.01")},
    {"tier": "turbo"},
])
def test_bad_input_is_refused_and_writes_nothing(acme, bad):
    with pytest.raises((ValidationError, TypeError)):
        record_usage(acme, **bad)
    assert not UsageRecord.objects.exists()


def test_ledger_refuses_update_and_delete_in_the_database(acme):
    row = record_usage(acme)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        UsageRecord.objects.filter(pk=row.pk).update(cost=Decimal("0"))
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM billing_usagerecord WHERE id = %s", [row.pk])
    assert UsageRecord.objects.filter(pk=row.pk, cost=row.cost).exists()


def test_deleting_a_key_or_user_leaves_the_rows(acme, alice):
    api_key, _ = make_api_key(tenant=acme, user=alice)
    key_id = api_key.pk
    record_usage(acme, source="api", user_id=alice.pk, api_key_id=key_id)
    api_key.delete()
    assert UsageRecord.objects.filter(api_key_id=key_id, user_id=alice.pk).count() == 1


def test_a_tenant_with_usage_cannot_be_deleted(acme):
    record_usage(acme)
    with pytest.raises(ProtectedError):
        acme.delete()


WRITER = """
import sys, django
django.setup()
from billing.models import UsageRecord
from tenants.models import Tenant
from tests.billing.conftest import record_usage
tenant = Tenant.objects.get(slug="acme")
ids = [record_usage(tenant, key=f"api:race-{i}", source="api", input_tokens=i + 1).pk for i in range(150)]
print(",".join(map(str, ids)))
"""


@pytest.mark.django_db(transaction=True)
def test_same_keys_from_two_processes_at_once_leave_one_row_each(plans):
    from tests.factories import TenantFactory

    TenantFactory(slug="acme", name="Acme Corp", plan=plans["pro"])
    db = settings.DATABASES["default"]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "kiwiclaw.settings",
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER], env=env, cwd=settings.BASE_DIR,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    ids_a, ids_b = (out.strip().split(",") for out, _ in outputs)
    assert ids_a == ids_b  # both writers got the same row back for every key
    assert UsageRecord.objects.filter(key__startswith="api:race-").count() == 150


def test_hand_cost_helper_matches_published_kimi_prices():
    assert hand_cost("kimi-k2.5", input_tokens=1_000_000, output_tokens=1_000_000) == Decimal("3.60")
