"""The money rules, and their SQL twins used by the set-based rollup, agree."""

from decimal import Decimal

import pytest
from django.db import connection

from billing import money

AMOUNTS = ["0", "0.004", "0.0049999999", "0.005", "0.0050000001", "0.015", "0.025", "1.994999", "1.995",
           "22.7992310000", "123456789.9950000000"]


def test_billed_amount_applies_markup_at_ledger_precision():
    assert money.billed_amount(Decimal("0.0000001"), Decimal("30")) == Decimal("0.0000001300")
    assert money.billed_amount(Decimal("0.00000000015"), Decimal("50")) == Decimal("0.0000000002")
    with pytest.raises(TypeError):
        money.billed_amount(0.1, Decimal("30"))


@pytest.mark.parametrize("amount", AMOUNTS)
def test_round_cents_is_half_up_and_matches_the_sql_twin(db, amount):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {money.round_cents_sql('%s::numeric')}", [amount])
        in_sql = cursor.fetchone()[0]
    assert money.round_cents(Decimal(amount)) == in_sql
    if amount == "0.005":
        assert in_sql == Decimal("0.01")


@pytest.mark.parametrize("usage,credit", [("0", "20"), ("5.55", "20"), ("20", "20"), ("23.98", "20"),
                                          ("10", "0")])
def test_credit_rule_matches_the_sql_twin(db, usage, credit):
    with connection.cursor() as cursor:
        sql = money.credit_applied_sql(usage_amount="%(u)s::numeric", included_credit="%(c)s::numeric")
        cursor.execute(f"SELECT {sql}", {"u": usage, "c": credit})
        in_sql = cursor.fetchone()[0]
    assert money.credit_applied(usage_amount=Decimal(usage), included_credit=Decimal(credit)) == in_sql


@pytest.mark.parametrize("cost,markup", [("0", "30"), ("0.0000001", "30"), ("0.00000000015", "50"),
                                         ("0.00000000005", "0"), ("0.0000000001", "50"), ("0.0000000003", "50"),
                                         ("0.0123456789", "33.33"),
                                         ("1.2345678901", "12.50"), ("22.7992310000", "100"),
                                         ("123456789.9950000000", "7.25")])
def test_billed_amount_matches_the_sql_twin(db, cost, markup):
    with connection.cursor() as cursor:
        sql = money.billed_amount_sql(cost="%(c)s::numeric", markup_percent="%(m)s::numeric")
        cursor.execute(f"SELECT {sql}", {"c": cost, "m": markup})
        in_sql = cursor.fetchone()[0]
    assert money.billed_amount(Decimal(cost), Decimal(markup)) == in_sql


def test_savings_is_the_difference_and_its_share_of_the_counterfactual_half_up():
    # 1.0000000000 − 0.1235000000 = 0.8765000000; 0.8765 × 100 / 1 = 87.65 → 87.7 (half-up; to-even gives 87.6)
    assert money.savings(counterfactual_billed=Decimal("1.0000000000"), actual_billed=Decimal("0.1235000000")) == (
        Decimal("0.8765000000"), Decimal("87.7"))
    # 0.0000000020 − 0.0000000019 = 0.0000000001; × 100 / 0.000000002 = 5.0
    assert money.savings(counterfactual_billed=Decimal("0.0000000020"),
                         actual_billed=Decimal("0.0000000019")) == (Decimal("0.0000000001"), Decimal("5.0"))


def test_savings_can_be_negative_and_is_none_without_a_counterfactual():
    # Auto turns that cost more than MAX would have: 1 − 1.5 = −0.5, −50.0%
    assert money.savings(counterfactual_billed=Decimal("1"), actual_billed=Decimal("1.5")) == (
        Decimal("-0.5"), Decimal("-50.0"))
    assert money.savings(counterfactual_billed=money.ZERO, actual_billed=money.ZERO) == (money.ZERO, None)
    with pytest.raises(TypeError):
        money.savings(counterfactual_billed=1.0, actual_billed=Decimal("0"))
