"""Money rules. Every amount is a `Decimal`; floats never touch money.

- Cost is what the provider charges us: tokens × the answering model's unit prices (USD per million tokens),
  computed by routing's cost function and handed to `billing.services.usage_record`.
- Billed amount = cost × (1 + markup_percent / 100), kept at ledger precision (10 decimal places of a dollar).
- Rounding to cents happens once, on invoice lines, by `round_cents` (half-up). Invoice totals are sums of
  already-rounded lines, so a total always equals the sum of the lines printed above it.
- Included credit offsets usage only (never the monthly fee) and never takes an invoice below the fee:
  credit applied = min(included credit, usage amount). Unused credit does not roll over.
- The monthly fee is the fee of the plan the tenant is on when the month ends; no proration.
- Smart Auto's savings, "against sending every Auto turn to MAX", are counted over the Auto turns (ledger rows
  with requested_tier "auto") that carry a counterfactual cost (the row's tokens at the MAX chain's first
  model's prices; empty only when no MAX model was configured, and such rows count in neither sum):
  counterfactual billed = Σ billed_amount(counterfactual_cost, the row's markup_percent), each row at ledger
  precision exactly like its real `billed`; actual billed = Σ billed of the same rows;
  saved = counterfactual billed − actual billed (negative if Auto turns cost more than MAX would have);
  percent = saved / counterfactual billed × 100, to one decimal, half-up; None when the counterfactual is 0.
  `savings` is the rule; `billed_amount_sql` is the per-row twin the selectors sum.
"""

from decimal import ROUND_HALF_UP, Decimal

# Ledger precision: a single token of the cheapest model is well above 1e-10 USD.
LEDGER_PLACES = Decimal("0.0000000001")
CENT = Decimal("0.01")
TENTH = Decimal("0.1")
HUNDRED = Decimal("100")
ZERO = Decimal("0")

# Budgets in Redis count whole units of LEDGER_PLACES, so the cache adds up exactly like the ledger.
UNITS_PER_DOLLAR = 10**10


def require_decimal(value, *, name: str) -> Decimal:
    """Reject floats and other non-Decimal money early, with a message naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}.")
    value = Decimal(value)
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite amount.")
    return value


def to_ledger(amount: Decimal) -> Decimal:
    """Quantize to ledger precision (10 places). Not a cents rounding: it only drops sub-1e-10 dust."""
    return amount.quantize(LEDGER_PLACES, rounding=ROUND_HALF_UP)


def billed_amount(cost: Decimal, markup_percent: Decimal) -> Decimal:
    """What the tenant is charged for a provider cost under a plan's markup, at ledger precision."""
    cost = require_decimal(cost, name="cost")
    markup_percent = require_decimal(markup_percent, name="markup_percent")
    return to_ledger(cost * (1 + markup_percent / HUNDRED))


def round_cents(amount: Decimal) -> Decimal:
    """THE rounding rule: to the cent, half-up (0.005 → 0.01). Applied once, to each invoice line."""
    return require_decimal(amount, name="amount").quantize(CENT, rounding=ROUND_HALF_UP)


def credit_applied(*, usage_amount: Decimal, included_credit: Decimal) -> Decimal:
    """Included credit offsets usage, never below zero and never against the fee."""
    return max(ZERO, min(included_credit, usage_amount))


def share_percent(part, whole) -> Decimal | None:
    """part / whole × 100, to one decimal, half-up; None when whole is 0. For shown shares (savings, escalations),
    never for amounts charged."""
    part, whole = Decimal(part), Decimal(whole)
    if not whole:
        return None
    return (part * HUNDRED / whole).quantize(TENTH, rounding=ROUND_HALF_UP)


def savings(*, counterfactual_billed: Decimal, actual_billed: Decimal) -> tuple[Decimal, Decimal | None]:
    """Smart Auto's (saved, percent) for a set of Auto turns, from the two sums described above.

    Both sums are at ledger precision, so `saved` is exact; only the percent is rounded.
    """
    counterfactual_billed = require_decimal(counterfactual_billed, name="counterfactual_billed")
    actual_billed = require_decimal(actual_billed, name="actual_billed")
    saved = counterfactual_billed - actual_billed
    return saved, share_percent(saved, counterfactual_billed)


# The same rules as SQL, for the set-based invoice rollup. Postgres round(numeric, 2) rounds half away from
# zero, which is half-up for the ledger's amounts (never negative). tests/billing/test_money.py checks that
# each SQL twin agrees with its Python rule.

def round_cents_sql(expression: str) -> str:
    return f"round({expression}, 2)"


def credit_applied_sql(*, usage_amount: str, included_credit: str) -> str:
    return f"GREATEST(0, LEAST({included_credit}, {usage_amount}))"


def billed_amount_sql(*, cost: str, markup_percent: str) -> str:
    """`billed_amount` per row: Postgres numeric arithmetic is exact here (a markup has two places), and
    round(numeric, 10) rounds half away from zero, half-up for costs (never negative)."""
    return f"round(({cost}) * (1 + ({markup_percent}) / 100), 10)"


def to_units(amount: Decimal) -> int:
    """Dollars → integer ledger units for the Redis budget counters."""
    return int(to_ledger(amount) * UNITS_PER_DOLLAR)


def from_units(units: int) -> Decimal:
    return (Decimal(units) / UNITS_PER_DOLLAR).quantize(LEDGER_PLACES)


# --- showing money to people ------------------------------------------------------------------------------

# THE display rule, used by every page (the `usd` template filter), message and CSV-free export:
# - whole cents (invoice amounts, fees, caps, zero) show as cents: $1,234.50, $0.00;
# - from $1 up, an exact ledger amount shows rounded to the cent, half-up: $12.35;
# - below $1, an exact ledger amount shows four places ($0.0032, $0.5000), and more when four would hide it:
#   enough places for two significant digits, up to the ledger's ten ($0.000042, $0.0000000012).
# So a total and the rows beside it show with the same places whenever they are below $1, and an amount that is
# not zero never shows as $0.00. Display only: what is billed is rounded by `round_cents`, once, on invoice lines.
SMALL_PLACES = 4
SIGNIFICANT = 2
LEDGER_DIGITS = 10
_ONE, _MINUS_ONE = Decimal(1), Decimal(-1)
_QUANTA = {places: Decimal(1).scaleb(-places) for places in range(2, LEDGER_DIGITS + 1)}


def display_places(amount: Decimal) -> int:
    """How many decimal places `display_usd` shows for `amount`."""
    magnitude = amount.copy_abs()
    if magnitude >= 1 or not magnitude or magnitude == magnitude.quantize(CENT):
        return 2
    # The position of the first significant digit after the point (0.0032 → 3), then one more digit.
    return min(max(SMALL_PLACES, SIGNIFICANT - 1 - magnitude.adjusted()), LEDGER_DIGITS)


def display_usd(amount) -> str:
    """$1,234.50 · $0.0032 · -$0.42: the one way money is shown to people (see the rule above). Pages format
    thousands of amounts (the finance overview), so the common case — a Decimal of a dollar or more — takes one
    quantize and one format."""
    if type(amount) is Decimal and (amount >= _ONE or amount <= _MINUS_ONE) and amount.is_finite():  # common
        shown = amount.quantize(CENT, rounding=ROUND_HALF_UP)
        return f"${shown:,}" if amount > 0 else f"-${-shown:,}"
    if type(amount) is not Decimal or not amount.is_finite():
        amount = require_decimal(amount, name="amount")
    places = display_places(amount)
    shown = amount.quantize(_QUANTA[places], rounding=ROUND_HALF_UP)
    if not shown:
        return "$0.00"  # dust under the ledger's precision; and never "-$0.00"
    # A quantized Decimal prints its places as they are ('{:,}'), except past six places, where str() would
    # switch to an exponent.
    text = f"{shown.copy_abs():,}" if places <= 6 else f"{shown.copy_abs():,.{places}f}"
    return f"-${text}" if shown < 0 else f"${text}"


def format_usd(amount: Decimal) -> str:
    """For messages to people: the same rule as every page."""
    return display_usd(amount)
