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
