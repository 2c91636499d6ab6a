"""The circuit breaker (shared through Redis by separate processes) and cost pricing."""

import os
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from django.conf import settings as django_settings

from routing.breaker import breaker_acquire, breaker_states
from routing.cost import estimate_tokens, price_usage
from routing.errors import ProviderError
from routing.types import Prices, Usage

from .conftest import ask, complete, run

pytestmark = pytest.mark.django_db

OPUS = "claude-opus-4-6"

OTHER_PROCESS = """
import asyncio, json, sys, django
django.setup()
from routing import breaker
async def main(op, slug):
    if op == "fail":
        return await breaker.breaker_record_failure(slug)
    if op == "acquire":
        return await breaker.breaker_acquire(slug)
    return (await breaker.breaker_states([slug]))[slug]["state"]
print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
"""


def other_process(op: str, slug: str, settings):
    """Run one breaker operation in a separate Python process sharing only Redis with this one."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="kiwiclaw.settings", REDIS_URL=django_settings.REDIS_URL,
               ROUTING_BREAKER_THRESHOLD=str(settings.ROUTING_BREAKER_THRESHOLD),
               ROUTING_BREAKER_COOLDOWN_SECONDS=str(settings.ROUTING_BREAKER_COOLDOWN_SECONDS),
               ROUTING_BREAKER_TRIAL_SECONDS=str(settings.ROUTING_BREAKER_TRIAL_SECONDS))
    out = subprocess.run([sys.executable, "-c", OTHER_PROCESS, op, slug], env=env, capture_output=True,
                         text=True, timeout=30, cwd=str(django_settings.BASE_DIR))
    assert out.returncode == 0, out.stderr
    return __import__("json").loads(out.stdout.strip().splitlines()[-1])


def test_breaker_opens_after_consecutive_failures_and_the_chain_skips_it(routing_env, pro_tenant, settings):
    settings.ROUTING_BREAKER_COOLDOWN_SECONDS = 30
    routing_env.scenario(OPUS, status=529)
    for _ in range(settings.ROUTING_BREAKER_THRESHOLD):
        assert complete(tenant=pro_tenant, tier="max", request=ask()).endpoint == "claude-sonnet-4-6"
    assert run(breaker_states, [OPUS])[OPUS]["state"] == "open"
    routing_env.reset()
    result = complete(tenant=pro_tenant, tier="max", request=ask())
    assert routing_env.models_called() == ["claude-sonnet-4-6"]  # opus not called at all
    assert (result.attempts[0].endpoint, result.attempts[0].outcome) == (OPUS, "skipped")
    assert "skipped claude-opus-4-6: circuit open" in result.reason


def test_breaker_is_shared_between_processes_and_half_opens_for_one_trial(routing_env, pro_tenant, settings):
    # Long enough that starting the other processes on a loaded machine cannot outlast it.
    settings.ROUTING_BREAKER_COOLDOWN_SECONDS = 3.0
    settings.ROUTING_BREAKER_TRIAL_SECONDS = 60.0
    # Another process sees the endpoint fail until the breaker opens...
    states = [other_process("fail", OPUS, settings) for _ in range(settings.ROUTING_BREAKER_THRESHOLD)]
    assert states == ["closed", "closed", "open"]
    # ...and this process skips it.
    result = complete(tenant=pro_tenant, tier="max", request=ask())
    assert result.endpoint == "claude-sonnet-4-6"
    assert OPUS not in routing_env.models_called()
    # Wait out what is left of the cool-down (a state change, not a timing assertion).
    time.sleep(run(breaker_states, [OPUS])[OPUS]["retry_in_ms"] / 1000 + 0.05)
    assert other_process("state", OPUS, settings) == "half_open"
    # Exactly one trial: this process claims it, the other process is refused.
    assert run(breaker_acquire, OPUS) is True
    assert other_process("acquire", OPUS, settings) is False
    assert other_process("state", OPUS, settings) == "trial_busy"


def test_half_open_trial_success_closes_and_failure_reopens(routing_env, pro_tenant, settings):
    settings.ROUTING_BREAKER_COOLDOWN_SECONDS = 0.3
    for _ in range(settings.ROUTING_BREAKER_THRESHOLD):
        other_process("fail", OPUS, settings)
    time.sleep(0.4)
    routing_env.scenario(OPUS, status=500)
    result = complete(tenant=pro_tenant, tier="max", request=ask())  # the trial fails
    assert [a.endpoint for a in result.attempts][:1] == [OPUS] and result.endpoint == "claude-sonnet-4-6"
    assert "half-open trial" in result.reason
    assert run(breaker_states, [OPUS])[OPUS]["state"] == "open"
    time.sleep(0.4)
    routing_env.reset()
    assert complete(tenant=pro_tenant, tier="max", request=ask()).endpoint == OPUS  # the trial succeeds
    assert run(breaker_states, [OPUS])[OPUS] == {"state": "closed", "failures": 0, "retry_in_ms": 0}


def test_a_success_at_a_clean_breaker_skips_the_reset_and_one_after_failures_clears_them(
        routing_env, pro_tenant, monkeypatch):
    from routing import dispatch
    from routing.breaker import breaker_record_failure

    resets = []
    real_reset = dispatch.breaker_record_success

    async def counting_reset(slug):
        resets.append(slug)
        await real_reset(slug)

    monkeypatch.setattr(dispatch, "breaker_record_success", counting_reset)
    assert complete(tenant=pro_tenant, tier="max", request=ask()).endpoint == OPUS
    assert resets == []  # the state read showed it clean: nothing to reset, no Redis write
    run(breaker_record_failure, OPUS)
    assert complete(tenant=pro_tenant, tier="max", request=ask()).endpoint == OPUS
    assert resets == [OPUS]
    assert run(breaker_states, [OPUS])[OPUS] == {"state": "closed", "failures": 0, "retry_in_ms": 0}


def test_bad_request_errors_do_not_count_towards_the_breaker(routing_env, pro_tenant, settings):
    routing_env.scenario(OPUS, status=400, error_message="temperature: bad")
    for _ in range(settings.ROUTING_BREAKER_THRESHOLD + 1):
        with pytest.raises(ProviderError) as refused:
            complete(tenant=pro_tenant, tier="max", request=ask())
        assert refused.value.kind == "bad_request"
    assert run(breaker_states, [OPUS])[OPUS]["state"] == "closed"


def test_all_breakers_open_is_reported_as_such(routing_env, pro_tenant, settings):
    from routing.errors import AllEndpointsFailed

    settings.ROUTING_BREAKER_COOLDOWN_SECONDS = 30
    for slug in ("kimi-k2.5", "claude-haiku-4-5"):
        for _ in range(settings.ROUTING_BREAKER_THRESHOLD):
            other_process("fail", slug, settings)
    with pytest.raises(AllEndpointsFailed) as caught:
        complete(tenant=pro_tenant, tier="auto", request=ask())
    assert caught.value.all_breakers_open is True
    assert "temporarily unavailable" in caught.value.message
    assert routing_env.requests() == []


# --- cost ---------------------------------------------------------------------------------------------------

USAGE = Usage(input_tokens=1_000, output_tokens=500, cache_read_tokens=2_000, cache_write_tokens=400)


@pytest.mark.parametrize(
    "slug,expected",
    [
        # 1000×5 + 500×25 + 400×6.25 + 2000×0.50 = 5000 + 12500 + 2500 + 1000 = 21000 per million
        ("claude-opus-4-6", Decimal("0.0210000000")),
        # 1000×3 + 500×15 + 400×3.75 + 2000×0.30 = 3000 + 7500 + 1500 + 600 = 12600
        ("claude-sonnet-4-6", Decimal("0.0126000000")),
        # 1000×1 + 500×5 + 400×1.25 + 2000×0.10 = 1000 + 2500 + 500 + 200 = 4200
        ("claude-haiku-4-5", Decimal("0.0042000000")),
        # 1000×0.60 + 500×3 + 400×0.60 + 2000×0.10 = 600 + 1500 + 240 + 200 = 2540
        ("kimi-k2.5", Decimal("0.0025400000")),
    ],
)
def test_cost_of_a_known_usage_at_each_default_endpoint(slug, expected):
    from routing.catalog import catalog_load

    prices = catalog_load().endpoints[slug].prices
    cost = price_usage(prices=prices, usage=USAGE)
    assert cost == expected and isinstance(cost, Decimal)


def test_one_token_of_the_cheapest_price_is_not_rounded_away():
    prices = Prices(input=Decimal("0.60"), output=Decimal("3"), cache_write=Decimal("0.60"),
                    cache_read=Decimal("0.10"))
    assert price_usage(prices=prices, usage=Usage(cache_read_tokens=1)) == Decimal("0.0000001000")


def test_fallback_is_priced_at_the_endpoint_that_answered(routing_env, pro_tenant):
    routing_env.scenario(OPUS, status=529)
    result = complete(tenant=pro_tenant, tier="max", request=ask("hello there"))
    assert result.endpoint == "claude-sonnet-4-6"
    assert result.prices == Prices(input=Decimal("3"), output=Decimal("15"), cache_write=Decimal("3.75"),
                                   cache_read=Decimal("0.30"))
    # 3 input × 3 + 12 output × 15 = 189 per million
    assert result.cost == Decimal("0.0001890000")


def test_price_change_applies_to_new_requests_only(routing_env, pro_tenant):
    from routing.models import ModelEndpoint

    before = complete(tenant=pro_tenant, tier="auto", request=ask("hello there"))
    ModelEndpoint.objects.filter(slug="kimi-k2.5").update(price_output=Decimal("6"))
    after = complete(tenant=pro_tenant, tier="auto", request=ask("hello there"))
    assert before.prices.output == Decimal("3.00") and before.cost == Decimal("0.0000378000")
    assert after.prices.output == Decimal("6") and after.cost == Decimal("0.0000738000")


def test_named_estimator_rounds_chars_over_four_up():
    assert [estimate_tokens(t) for t in ("", "a", "abcd", "abcde")] == [0, 1, 1, 2]


def test_estimate_max_cost_bounds_the_actual_cost(routing_env, pro_tenant):
    from routing.cost import estimate_max_cost

    request = ask("hello there", max_tokens=12)
    bound = estimate_max_cost(tenant=pro_tenant, tier="max", request=request)
    result = complete(tenant=pro_tenant, tier="max", request=request)
    assert bound >= result.cost > 0


def test_breaker_writes_are_best_effort_when_redis_is_gone(settings):
    """An answer that is out must not fail because its breaker bookkeeping could not reach Redis."""
    import socket

    from infra.redis import aclose_redis
    from routing.breaker import UNKNOWN, breaker_record_failure, breaker_record_success

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"

    async def writes():
        try:
            return await breaker_record_failure("kimi-k2.5"), await breaker_record_success("kimi-k2.5")
        finally:
            await aclose_redis()

    assert run(writes) == (UNKNOWN, None)
