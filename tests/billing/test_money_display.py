"""Money that adds up: one display rule for every page, and the current month live on /finance/ and /invoices/
without waiting for beat's first rollup."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.models import Invoice
from billing.money import display_usd
from billing.months import month_start
from billing.services import invoice_rollup, invoice_rollup_if_stale
from billing.templatetags.billing_tags import usd
from tests.billing.conftest import record_usage


@pytest.mark.parametrize(("amount", "shown"), [
    ("0", "$0.00"),
    ("1234.5", "$1,234.50"),          # whole cents: cents
    ("0.50", "$0.50"),
    ("12.3456", "$12.35"),            # from $1 up: to the cent, half-up
    ("0.0032", "$0.0032"),            # below $1: four places
    ("0.00273", "$0.0027"),
    ("0.5005", "$0.5005"),
    ("0.0000117", "$0.000012"),       # four places would say $0.0000: two significant digits
    ("0.0000000001", "$0.0000000001"),  # down to the ledger's tenth place
    ("-0.42", "-$0.42"),
    ("-0.0032", "-$0.0032"),
    ("-0.00000000001", "$0.00"),      # dust under the ledger's precision is no "-$0.00"
])
def test_one_display_rule(amount, shown):
    assert display_usd(Decimal(amount)) == shown
    assert usd(Decimal(amount)) == shown
    assert usd(Decimal(amount), 4) == shown  # an old `usd:4` in a template follows the same rule


def test_a_sub_cent_amount_never_shows_as_zero():
    for exponent in range(2, 11):
        assert display_usd(Decimal(1).scaleb(-exponent)) != "$0.00"


def _stat(body: str, attr: str) -> str:
    return re.search(rf"{attr}>([^<]+)<", body).group(1)


def test_the_usage_card_and_the_tables_show_the_same_sub_cent_total(client, acme, alice):
    # kimi: 1,000 × $0.60/M + 500 × $3.00/M = $0.0021; Pro's 30% markup → billed $0.00273 → $0.0027.
    record_usage(acme, input_tokens=1000, output_tokens=500, user_id=alice.pk)
    client.force_login(alice)
    body = client.get("/usage/").content.decode()
    assert _stat(body, "data-total-billed") == "$0.0027"
    assert "$0.00<" not in body
    assert body.count("$0.0027") >= 4  # the card, the model row and total, the day row and total


# --- the current month, live --------------------------------------------------------------------------------

def test_finance_overview_shows_the_current_month_before_any_rollup(client, acme, alice, finance_user):
    record_usage(acme, input_tokens=1000, output_tokens=500, user_id=alice.pk)
    assert not Invoice.objects.exists()
    client.force_login(finance_user)
    body = client.get("/finance/").content.decode()
    row = re.search(r'<tr data-tenant="acme">.*?</tr>', body, re.S).group(0)
    assert "$0.0027" in row  # billed, live from the ledger through a rollup on demand
    assert Invoice.objects.get(tenant=acme, month=month_start()).usage_billed == Decimal("0.0027300000")


def test_finance_overview_rolls_up_again_only_when_the_last_rollup_is_stale(client, acme, alice, finance_user,
                                                                            settings):
    record_usage(acme, input_tokens=1000, output_tokens=500, user_id=alice.pk)
    invoice_rollup(month=month_start())
    record_usage(acme, input_tokens=1000, output_tokens=500, user_id=alice.pk)
    # A fresh rollup: the page reads the invoice rows it left (fast at any ledger size) and rolls up nothing.
    assert invoice_rollup_if_stale() is False
    # Beat stalled for more than two intervals: the next page rolls up.
    interval = settings.CELERY_BEAT_SCHEDULE["billing-rollup-current-month"]["schedule"]
    Invoice.objects.filter(tenant=acme).update(rolled_up_at=timezone.now() - timedelta(seconds=2 * interval + 1))
    client.force_login(finance_user)
    client.get("/finance/")
    assert Invoice.objects.get(tenant=acme).usage_billed == Decimal("0.0054600000")  # 2 × 0.00273


def test_tenant_invoices_show_the_current_draft_before_any_rollup(client, acme, alice):
    # kimi: 1,000,000 × $0.60/M + 100,000 × $3.00/M = $0.90; × 1.3 = $1.17 billed; Pro: $20 credit covers it,
    # fee $49 → total $49.00.
    record_usage(acme, input_tokens=1_000_000, output_tokens=100_000, user_id=alice.pk)
    client.force_login(alice)
    body = client.get("/invoices/").content.decode()
    invoice = Invoice.objects.get(tenant=acme, month=month_start())
    assert f'data-invoice="{invoice.pk}"' in body
    assert "$1.17" in body and "$49.00" in body


def test_a_stale_draft_is_brought_up_to_date_when_its_page_opens(client, acme, alice):
    record_usage(acme, input_tokens=1_000_000, output_tokens=100_000, user_id=alice.pk)
    invoice_rollup(month=month_start(), tenant=acme)
    record_usage(acme, input_tokens=1_000_000, output_tokens=100_000, user_id=alice.pk)
    client.force_login(alice)
    invoice = Invoice.objects.get(tenant=acme)
    assert "$1.17" in client.get(f"/invoices/{invoice.pk}/").content.decode()  # rolled up seconds ago: as is
    Invoice.objects.filter(pk=invoice.pk).update(rolled_up_at=timezone.now() - timedelta(minutes=2))
    body = client.get(f"/invoices/{invoice.pk}/").content.decode()
    assert "$2.34" in body  # 2 × $1.17


def test_a_rollup_on_demand_never_touches_an_ended_month(acme, alice):
    assert invoice_rollup_if_stale(month=month_start() - timedelta(days=40)) is False
