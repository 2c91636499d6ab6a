"""Smart Auto on /v1, through both SDKs against the live server: an escalated `auto` call is answered by Opus,
says so in `x-kiwiclaw-route`, and its usage row carries the decision; the rules hold as in the chat."""

from decimal import Decimal

import pytest

from routing.smart import router
from routing.types import ChatMessage, ChatRequest
from tests.smart_prompts import prompt_at_or_above, prompt_below

from .conftest import usage_rows

pytestmark = pytest.mark.django_db(transaction=True)

OPUS, KIMI = "claude-opus-4-6", "kimi-k2.5"
LEVEL = 10  # the widest dial setting
HARD, _ = prompt_at_or_above(LEVEL)  # prompts chosen by their scores, on either side of its threshold
EASY, _ = prompt_below(LEVEL)


def _score(text: str) -> float:
    return router().score_request(ChatRequest(messages=[ChatMessage(role="user", content=text)]))


@pytest.fixture
def dial(acme):
    """Set acme's dial before the key's first call (the server caches the key's tenant)."""
    def set_level(level):
        acme.auto_escalation = level
        acme.save(update_fields=["auto_escalation"])
    return set_level


def _route_header(score: float, escalated: bool) -> str:
    return f"smart; score={score:.2f}; escalated={int(escalated)}"


def test_openai_sdk_escalated_call_is_answered_by_opus_with_the_route_header(openai_client, dial):
    dial(LEVEL)
    score = _score(HARD)
    assert score >= router().threshold(LEVEL)
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": HARD}])
    completion = raw.parse()
    assert completion.model == OPUS
    assert raw.headers["x-kiwiclaw-route"] == _route_header(score, True)
    assert raw.headers["x-kiwiclaw-tier"] == "max"
    [row] = usage_rows(1)
    assert (row.endpoint_slug, row.tier, row.requested_tier, row.route_escalated) == (OPUS, "max", "auto", True)
    assert row.route_score == pytest.approx(score) and row.route_threshold == pytest.approx(router().threshold(LEVEL))
    assert row.router_version == router().version
    assert row.counterfactual_cost == row.cost  # answered by the MAX chain's first model: nothing saved


def test_openai_sdk_streamed_call_carries_the_header_too(openai_client, dial):
    dial(LEVEL)
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": HARD}], stream=True)
    assert raw.headers["x-kiwiclaw-route"] == _route_header(_score(HARD), True)
    chunks = list(raw.parse())
    assert {c.model for c in chunks} == {OPUS}
    assert len(usage_rows(1)) == 1


def test_anthropic_sdk_escalated_call_is_answered_by_opus_with_the_route_header(anthropic_client, dial):
    dial(LEVEL)
    raw = anthropic_client.messages.with_raw_response.create(
        model="auto", max_tokens=200, messages=[{"role": "user", "content": HARD}])
    message = raw.parse()
    assert message.model == OPUS
    assert raw.headers["x-kiwiclaw-route"] == _route_header(_score(HARD), True)
    [row] = usage_rows(1)
    assert (row.endpoint_slug, row.requested_tier, row.route_escalated) == (OPUS, "auto", True)


def test_an_easy_call_stays_on_kimi_and_saves_against_max(openai_client, dial):
    dial(LEVEL)
    score = _score(EASY)
    assert score < router().threshold(LEVEL)
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": EASY}])
    assert raw.parse().model == KIMI
    assert raw.headers["x-kiwiclaw-route"] == _route_header(score, False)
    [row] = usage_rows(1)
    assert row.route_escalated is False and row.counterfactual_cost > row.cost
    # Opus's published prices ($5 / $25 per million tokens) on the row's own tokens, by hand.
    expected = (Decimal(row.input_tokens) * 5 + Decimal(row.output_tokens) * 25) / Decimal(1_000_000)
    assert row.counterfactual_cost == expected.quantize(Decimal("0.0000000001"))


def test_the_dial_at_off_answers_fixed(openai_client, dial):
    dial(0)
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": HARD}])
    assert raw.parse().model == KIMI
    assert raw.headers["x-kiwiclaw-route"] == "fixed"
    [row] = usage_rows(1)
    assert (row.requested_tier, row.route_score, row.route_escalated) == ("auto", None, None)


def test_max_calls_are_not_scored(anthropic_client, dial):
    dial(LEVEL)
    raw = anthropic_client.messages.with_raw_response.create(
        model="max", max_tokens=200, messages=[{"role": "user", "content": EASY}])
    assert raw.parse().model == OPUS
    assert raw.headers["x-kiwiclaw-route"] == "fixed"
    [row] = usage_rows(1)
    assert (row.requested_tier, row.route_escalated, row.counterfactual_cost) == ("max", None, None)


def test_a_plan_without_max_never_escalates_on_the_api(server, bob_key, globex):
    import openai

    globex.auto_escalation = LEVEL
    globex.save(update_fields=["auto_escalation"])
    client = openai.OpenAI(api_key=bob_key, base_url=f"{server.url}/v1", max_retries=0, timeout=20)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": HARD}])
    finally:
        client.close()
    assert raw.parse().model == KIMI and raw.headers["x-kiwiclaw-route"] == "fixed"
