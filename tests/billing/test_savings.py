"""Smart Auto's savings and the routing mix: the figures against hand-computed Decimals, the tenant's usage card,
the finance overview, drill-down and CSV, finance-only access, and tenant isolation.

Every amount below is written out by hand, with its arithmetic in a comment; nothing expected is computed by
the code under test. Prices (USD per million tokens): Kimi K2.5 input 0.60, output 3.00; Claude Opus 4.6 (MAX's
first model) input 5, output 25. acme is on the pro plan (markup 30%), globex on free (markup 50%).
"""

import csv
import io
import itertools
import re
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import redis

from billing import selectors
from billing.models import UsageRecord
from billing.months import month_start
from billing.services import invoice_rollup, usage_record

PAST = date(2025, 3, 1)
_keys = itertools.count(1)

# (provider, input, output, cache write, cache read) in USD per million tokens.
_PRICES = {
    "kimi-k2.5": ("moonshot", Decimal("0.60"), Decimal("3.00"), Decimal("0"), Decimal("0.10")),
    "claude-opus-4-6": ("anthropic", Decimal("5"), Decimal("25"), Decimal("6.25"), Decimal("0.50")),
}


def turn(tenant, *, endpoint, input_tokens, output_tokens, cost, requested_tier="auto", escalated=None,
         counterfactual_cost=None, user_id=None, source="chat"):
    """One usage row through the real service, with the routing facts routing.metering would record."""
    provider, p_in, p_out, p_cw, p_cr = _PRICES[endpoint]
    scored = escalated is not None
    return usage_record(
        tenant=tenant, source=source, key=f"{source}:savings-{next(_keys)}", user_id=user_id, api_key_id=None,
        endpoint_slug=endpoint, provider=provider, tier="max" if endpoint.startswith("claude") else "auto",
        input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=0, cache_write_tokens=0,
        output_estimated=False, price_input=p_in, price_output=p_out, price_cache_write=p_cw, price_cache_read=p_cr,
        cost=Decimal(cost), requested_tier=requested_tier,
        route_score=(0.9 if escalated else 0.2) if scored else None, route_threshold=0.5 if scored else None,
        route_escalated=escalated, router_version="test-1" if scored else "",
        counterfactual_cost=Decimal(counterfactual_cost) if counterfactual_cost is not None else None,
    )


@pytest.fixture
def acme_month(acme, alice, carol):
    """acme this month: four Auto turns (two stayed, one escalated, one not scored), a MAX turn and a named-model
    request. Tokens, cost and counterfactual per row; billed = cost × 1.3 and the counterfactual billed likewise.

      A stayed     kimi 10,000 in / 2,000 out  cost 0.006 + 0.006 = 0.012  billed 0.0156
                   on Opus 0.05 + 0.05 = 0.10                               billed 0.13
      B stayed     kimi 40,000 / 4,000         cost 0.024 + 0.012 = 0.036  billed 0.0468
                   on Opus 0.2 + 0.1 = 0.30                                 billed 0.39
      C escalated  opus 20,000 / 1,000         cost 0.1 + 0.025 = 0.125    billed 0.1625
                   on Opus, the same 0.125                                  billed 0.1625
      D unscored   kimi 5,000 / 500            cost 0.003 + 0.0015 = 0.0045  billed 0.00585
                   on Opus 0.025 + 0.0125 = 0.0375                          billed 0.04875
      E MAX asked  opus 1,000 / 100            cost 0.0075, no counterfactual: not an Auto turn
      F named      kimi 1,000 / 100            cost 0.0009, requested tier "": not an Auto turn

    B and D are carol's; the rest alice's.
    """
    turn(acme, endpoint="kimi-k2.5", input_tokens=10_000, output_tokens=2_000, cost="0.012", escalated=False,
         counterfactual_cost="0.10", user_id=alice.pk)
    turn(acme, endpoint="kimi-k2.5", input_tokens=40_000, output_tokens=4_000, cost="0.036", escalated=False,
         counterfactual_cost="0.30", user_id=carol.pk, source="api")
    turn(acme, endpoint="claude-opus-4-6", input_tokens=20_000, output_tokens=1_000, cost="0.125", escalated=True,
         counterfactual_cost="0.125", user_id=alice.pk)
    turn(acme, endpoint="kimi-k2.5", input_tokens=5_000, output_tokens=500, cost="0.0045", escalated=None,
         counterfactual_cost="0.0375", user_id=carol.pk)
    turn(acme, endpoint="claude-opus-4-6", input_tokens=1_000, output_tokens=100, cost="0.0075",
         requested_tier="max", user_id=alice.pk)
    turn(acme, endpoint="kimi-k2.5", input_tokens=1_000, output_tokens=100, cost="0.0009", requested_tier="",
         user_id=alice.pk, source="api")


@pytest.fixture
def globex_month(globex, bob):
    """globex this month (markup 50%): one Auto turn escalated, one stayed, two MAX turns.

      escalated  opus 10,000 / 1,000  cost 0.05 + 0.025 = 0.075  billed 0.1125; on Opus the same: 0.1125
      stayed     kimi 100,000 / 10,000  cost 0.06 + 0.03 = 0.09  billed 0.135; on Opus 0.5 + 0.25 = 0.75,
                 billed 1.125
      MAX × 2    opus 2,000 / 200 each  cost 0.015 each
    """
    turn(globex, endpoint="claude-opus-4-6", input_tokens=10_000, output_tokens=1_000, cost="0.075",
         escalated=True, counterfactual_cost="0.075", user_id=bob.pk)
    turn(globex, endpoint="kimi-k2.5", input_tokens=100_000, output_tokens=10_000, cost="0.09", escalated=False,
         counterfactual_cost="0.75", user_id=bob.pk)
    for _ in range(2):
        turn(globex, endpoint="claude-opus-4-6", input_tokens=2_000, output_tokens=200, cost="0.015",
             requested_tier="max", user_id=bob.pk)


def _text(response) -> str:
    """The page's text with tags removed and white space collapsed, as a reader sees it."""
    assert response.status_code == 200
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


# --- the figures -------------------------------------------------------------------------------------------

def test_savings_equal_the_hand_computed_figures(acme_month, acme):
    figures = selectors.smart_savings(tenant=acme, month=month_start())
    assert (figures["auto_turns"], figures["escalated_turns"], figures["stayed_turns"]) == (4, 1, 3)
    assert (figures["max_turns"], figures["other_turns"]) == (1, 1)
    # 0.13 + 0.39 + 0.1625 + 0.04875
    assert figures["counterfactual_billed"] == Decimal("0.7312500000")
    # 0.0156 + 0.0468 + 0.1625 + 0.00585
    assert figures["actual_billed"] == Decimal("0.2307500000")
    # 0.73125 − 0.23075
    assert figures["saved"] == Decimal("0.5005000000")
    # 0.5005 / 0.73125 × 100 = 68.444… → 68.4
    assert figures["saved_percent"] == Decimal("68.4")
    # 1 of 4
    assert figures["escalated_percent"] == Decimal("25.0")


def test_the_usage_page_shows_the_hand_computed_savings(client, acme_month, alice):
    client.force_login(alice)
    text = _text(client.get("/usage/"))
    # $0.5005: below a dollar, four places (billing.money.display_usd)
    assert "Smart Auto saved $0.5005 (68.4%) this month against sending every Auto turn to MAX" in text
    assert "25.0% of Auto turns escalated to MAX (1 of 4)" in text


def test_a_member_sees_savings_on_their_own_auto_turns_only(client, acme_month, carol):
    """carol's B and D: counterfactual 0.39 + 0.04875 = 0.43875, billed 0.0468 + 0.00585 = 0.05265,
    saved 0.3861 → $0.3861; 0.3861 / 0.43875 × 100 = 88.0 (exactly 88)."""
    client.force_login(carol)
    text = _text(client.get("/usage/"))
    assert "Smart Auto saved $0.3861 (88.0%) this month" in text
    assert "0.0% of your Auto turns escalated to MAX (0 of 2)" in text


def test_auto_turns_without_a_counterfactual_count_as_turns_but_not_in_the_savings(acme_month, acme):
    """No MAX model priced: the turn counts as Auto, and in neither sum (else it would inflate the bill side)."""
    turn(acme, endpoint="kimi-k2.5", input_tokens=1_000, output_tokens=100, cost="0.0009", escalated=False)
    figures = selectors.smart_savings(tenant=acme, month=month_start())
    assert figures["auto_turns"] == 5
    assert figures["counterfactual_billed"] == Decimal("0.7312500000")
    assert figures["actual_billed"] == Decimal("0.2307500000")


def test_auto_turns_that_cost_more_than_max_say_so(client, acme, alice):
    """A Kimi answer dearer than Opus would have been (made up, to see the wording): cost 0.02, billed 0.026;
    counterfactual 0.01, billed 0.013; saved 0.013 − 0.026 = −0.013 → $0.0130; −0.013 / 0.013 = −100.0%."""
    turn(acme, endpoint="kimi-k2.5", input_tokens=1_000, output_tokens=100, cost="0.02", escalated=False,
         counterfactual_cost="0.01", user_id=alice.pk)
    client.force_login(alice)
    text = _text(client.get("/usage/"))
    assert "Smart Auto cost $0.0130 (100.0%) more this month than sending every Auto turn to MAX" in text
    assert "$-" not in text


# --- the usage card: months, empty state, isolation, queries ------------------------------------------------

def test_a_month_without_auto_turns_has_a_friendly_empty_state(client, acme, alice):
    turn(acme, endpoint="claude-opus-4-6", input_tokens=1_000, output_tokens=100, cost="0.0075",
         requested_tier="max", user_id=alice.pk)
    client.force_login(alice)
    body = client.get("/usage/").content.decode()
    assert 'data-empty="smart-auto"' in body and "No Auto turns yet this month" in body
    assert "Smart Auto saved" not in body


def test_the_card_follows_the_month_picker(client, acme_month, acme, alice):
    """A March 2025 Auto turn (inserted directly: the service stamps now()): cost 0.012, billed 0.0156;
    counterfactual 0.10, billed 0.13; saved 0.1144 → $0.1144; 0.1144 / 0.13 × 100 = 88.0."""
    UsageRecord.objects.create(
        tenant=acme, source="chat", key="chat:savings-past", user_id=alice.pk, endpoint_slug="kimi-k2.5",
        provider="moonshot", tier="auto", input_tokens=10_000, output_tokens=2_000,
        price_input=Decimal("0.60"), price_output=Decimal("3.00"), price_cache_write=Decimal("0"),
        price_cache_read=Decimal("0.10"), cost=Decimal("0.012"), markup_percent=Decimal("30"),
        billed=Decimal("0.0156"), requested_tier="auto", route_escalated=False,
        counterfactual_cost=Decimal("0.10"), recorded_at=datetime(2025, 3, 14, 12, tzinfo=UTC),
    )
    client.force_login(alice)
    text = _text(client.get("/usage/?month=2025-03"))
    assert "Smart Auto saved $0.1144 (88.0%) in March 2025 against sending every Auto turn to MAX" in text
    assert "0.0% of Auto turns escalated to MAX (0 of 1)" in text
    assert "No Auto turns in January 2025" in _text(client.get("/usage/?month=2025-01"))


def test_another_tenants_auto_turns_never_count_on_the_usage_card(client, acme, alice, globex_month, bob):
    client.force_login(alice)
    body = client.get("/usage/").content.decode()
    assert "No Auto turns yet this month" in body  # globex has two; acme none
    assert selectors.smart_savings(tenant=acme, month=month_start())["auto_turns"] == 0
    client.force_login(bob)
    # globex: counterfactual 0.1125 + 1.125 = 1.2375, billed 0.1125 + 0.135 = 0.2475, saved 0.99;
    # 0.99 / 1.2375 × 100 = 80.0
    assert "Smart Auto saved $0.99 (80.0%) this month" in _text(client.get("/usage/"))


def test_the_usage_card_adds_one_query(client, acme_month, alice, django_assert_max_num_queries):
    client.force_login(alice)
    with django_assert_max_num_queries(20):
        assert client.get("/usage/").status_code == 200


# --- finance -------------------------------------------------------------------------------------------------

@pytest.fixture
def both_months(acme_month, globex_month):
    invoice_rollup(month=month_start())


def _overview_row(body: str, slug: str) -> str:
    match = re.search(rf'<tr data-tenant="{slug}">.*?</tr>', body, re.S)
    assert match, slug
    return match.group(0)


def _mix(html: str) -> dict:
    return {k: int(v) for k, v in re.findall(r'data-(stayed|escalated|max|other)="(\d+)"', html)}


def test_the_finance_overview_shows_each_tenants_mix_and_savings(client, both_months, finance_user,
                                                                  django_assert_max_num_queries):
    client.force_login(finance_user)
    with django_assert_max_num_queries(12):
        response = client.get("/finance/")
    body = response.content.decode()
    acme_row, globex_row = _overview_row(body, "acme"), _overview_row(body, "globex")
    assert _mix(acme_row) == {"stayed": 3, "escalated": 1, "max": 1, "other": 1}
    assert _mix(globex_row) == {"stayed": 1, "escalated": 1, "max": 2, "other": 0}
    assert 'data-saved="0.5005000000">$0.5005 · 68.4%</span>' in acme_row
    assert 'data-saved="0.9900000000">$0.99 · 80.0%</span>' in globex_row
    # All tenants: counterfactual 0.73125 + 1.2375 = 1.96875, billed 0.23075 + 0.2475 = 0.47825,
    # saved 0.5005 + 0.99 = 1.4905; 1.4905 / 1.96875 × 100 = 75.707… → 75.7; 2 of 6 Auto turns escalated
    footer = re.search(r"<tfoot>.*?</tfoot>", body, re.S).group(0)
    assert _mix(footer) == {"stayed": 4, "escalated": 2, "max": 3, "other": 1}
    assert 'data-saved="1.4905000000">$1.49 · 75.7%</span>' in footer
    assert "75.7% below all on MAX · 2 of 6 Auto turns escalated" in _text(response)


def test_the_finance_drilldown_shows_the_tenants_mix_and_savings(client, both_months, finance_user, acme):
    client.force_login(finance_user)
    body = client.get(f"/finance/tenants/{acme.pk}/").content.decode()
    row = re.search(r"<tr data-mix>.*?</tr>", body, re.S).group(0)
    assert re.search(r"data-stayed>3<", row) and re.search(r"data-escalated>1 ", row)
    assert re.search(r"data-max>1<", row) and re.search(r"data-other>1<", row)
    assert "25.0%" in row
    assert "$0.2308" in row and "$0.7313" in row  # 0.23075 and 0.73125, to four places half-up
    assert 'data-saved="0.5005000000">$0.5005 <span class="muted">68.4%</span>' in row


def test_the_finance_csv_has_the_mix_and_savings(client, both_months, finance_user):
    client.force_login(finance_user)
    response = client.get(f"/finance/tenants.csv?month={month_start():%Y-%m}")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    by_slug = {row[1]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    acme = by_slug["acme"]
    assert (acme["auto_stayed_turns"], acme["auto_escalated_turns"], acme["max_turns"],
            acme["named_model_turns"]) == ("3", "1", "1", "1")
    assert (acme["auto_billed"], acme["auto_billed_if_max"], acme["smart_auto_saved"],
            acme["smart_auto_saved_percent"]) == ("0.2307500000", "0.7312500000", "0.5005000000", "68.4")
    assert (by_slug["globex"]["smart_auto_saved"], by_slug["globex"]["max_turns"]) == ("0.9900000000", "2")


def test_a_month_without_usage_has_no_mix(client, both_months, finance_user, acme):
    client.force_login(finance_user)
    assert client.get("/finance/?month=2024-01").status_code == 200
    body = client.get(f"/finance/tenants/{acme.pk}/?month=2024-01").content.decode()
    assert 'data-empty="smart-auto"' in body


def test_the_overview_mix_is_refreshed_by_each_rollup(client, both_months, finance_user, acme, alice, redis_client):
    """The overview reads the rollup's invoice rows; its mix, a scan of the month's ledger, is cached per rollup."""
    client.force_login(finance_user)
    assert _mix(_overview_row(client.get("/finance/").content.decode(), "acme"))["stayed"] == 3
    turn(acme, endpoint="kimi-k2.5", input_tokens=1_000, output_tokens=100, cost="0.0009", escalated=False,
         counterfactual_cost="0.0075", user_id=alice.pk)
    assert _mix(_overview_row(client.get("/finance/").content.decode(), "acme"))["stayed"] == 3
    invoice_rollup(month=month_start())
    assert _mix(_overview_row(client.get("/finance/").content.decode(), "acme"))["stayed"] == 4


class _CacheDown:
    def get(self, *args, **kwargs):
        raise redis.ConnectionError("Redis is down")

    set = get


def test_the_overview_mix_is_computed_when_redis_is_down(client, both_months, finance_user, monkeypatch):
    monkeypatch.setattr(selectors, "cache", _CacheDown())
    mixes = selectors.routing_mix_all_tenants(month=month_start(),
                                              rolled_up_at=selectors.last_rollup_all_tenants(month=month_start()))
    assert sorted((m["auto_turns"], m["saved"]) for m in mixes.values()) == [
        (2, Decimal("0.9900000000")), (4, Decimal("0.5005000000"))]


@pytest.mark.parametrize("who", ["alice", "carol", "bob"])
def test_the_mix_is_for_finance_only(client, both_months, request, who, acme):
    client.force_login(request.getfixturevalue(who))
    for path in ("/finance/", "/finance/tenants.csv", f"/finance/tenants/{acme.pk}/"):
        assert client.get(path).status_code == 403, path
