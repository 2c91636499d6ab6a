"""The fallback matrix and retries, over real HTTP to the fake provider.

MAX chain: claude-opus-4-6 → claude-sonnet-4-6 → kimi-k2.5 (the first two speak Anthropic, the last OpenAI).
Auto chain: kimi-k2.5 → claude-haiku-4-5.
"""

import pytest

from routing.errors import AllEndpointsFailed, ProviderError

from .conftest import ask, complete

pytestmark = pytest.mark.django_db

OPUS, SONNET, KIMI, HAIKU = "claude-opus-4-6", "claude-sonnet-4-6", "kimi-k2.5", "claude-haiku-4-5"

# error kind -> fake provider scenario producing it before the first delta (Anthropic protocol endpoints)
BEFORE_DELTA = {
    "timeout": {"hang": True},
    "connection": {"drop_after": 0},
    "rate_limited": {"status": 429, "error_type": "rate_limit_error"},
    "overloaded": {"status": 529, "error_type": "overloaded_error"},
    "server": {"status": 500, "error_type": "api_error"},
    "server_malformed": {"malformed_after": 0},
    "auth": {"status": 401, "error_type": "authentication_error"},
    "context_length": {"status": 400, "error_type": "invalid_request_error",
                       "error_message": "prompt is too long: 210000 tokens > 200000 maximum"},
    "bad_request": {"status": 400, "error_type": "invalid_request_error", "error_message": "temperature: bad"},
}
TERMINAL = {"bad_request"}
# error kind -> scenario producing it after two deltas have been passed on
AFTER_DELTA = {
    "timeout": {"hang_after": 2},
    "connection": {"drop_after": 2},
    "overloaded": {"error_after": 2, "error_type": "overloaded_error"},
    "server": {"error_after": 2, "error_type": "api_error"},
    "server_malformed": {"malformed_after": 2},
}


def _kind(name):
    return name.split("_malformed")[0]


@pytest.mark.parametrize("name", BEFORE_DELTA)
def test_error_before_first_delta_at_first_endpoint(routing_env, pro_tenant, name):
    routing_env.scenario(OPUS, BEFORE_DELTA[name])
    if name in TERMINAL:
        with pytest.raises(ProviderError) as caught:
            complete(tenant=pro_tenant, tier="max", request=ask())
        assert caught.value.kind == _kind(name)
        assert [a.endpoint for a in caught.value.attempts] == [OPUS]
        assert routing_env.models_called() == [OPUS]  # the rest of the chain is not burned
        return
    result = complete(tenant=pro_tenant, tier="max", request=ask())
    assert result.endpoint == SONNET and result.finish_reason == "stop"
    assert result.fallback_count == 1
    assert [(a.endpoint, a.outcome, a.error_kind) for a in result.attempts] == [
        (OPUS, "error", _kind(name)), (SONNET, "ok", None)]
    assert routing_env.models_called() == [OPUS, SONNET]  # no retry of a failing endpoint that is not last


@pytest.mark.parametrize("name", BEFORE_DELTA)
def test_error_before_first_delta_at_second_endpoint(routing_env, pro_tenant, name):
    routing_env.scenario(OPUS, status=529)
    routing_env.scenario(SONNET, BEFORE_DELTA[name])
    if name in TERMINAL:
        with pytest.raises(ProviderError) as caught:
            complete(tenant=pro_tenant, tier="max", request=ask())
        assert caught.value.kind == _kind(name)
        assert routing_env.models_called() == [OPUS, SONNET]
        return
    result = complete(tenant=pro_tenant, tier="max", request=ask())
    assert result.endpoint == KIMI and result.provider == "moonshot"
    assert result.fallback_count == 2
    assert [(a.endpoint, a.error_kind) for a in result.attempts] == [
        (OPUS, "overloaded"), (SONNET, _kind(name)), (KIMI, None)]
    assert result.cost > 0 and result.prices.input == KIMI_INPUT_PRICE


KIMI_INPUT_PRICE = __import__("decimal").Decimal("0.60")


@pytest.mark.parametrize("name", AFTER_DELTA)
@pytest.mark.parametrize("position", ["first", "second"])
def test_error_after_first_delta_ends_the_answer_without_fallback(routing_env, pro_tenant, name, position):
    failing = OPUS if position == "first" else SONNET
    if position == "second":
        routing_env.scenario(OPUS, status=500)
    routing_env.scenario(failing, AFTER_DELTA[name])
    result = complete(tenant=pro_tenant, tier="max", request=ask("hello"))
    assert result.finish_reason == "error"
    assert result.endpoint == failing
    assert result.text == "Echo from"  # the two deltas passed on are kept
    assert result.error
    assert result.attempts[-1].error_kind == _kind(name)
    assert KIMI not in routing_env.models_called()
    # Tokens are still counted: input as reported by message_start, output from the named estimator.
    assert result.usage.input_tokens == 2
    assert result.usage.output_tokens == 3  # ceil(len("Echo from") / 4)
    assert result.usage.output_estimated is True
    assert result.cost > 0


def test_openai_mid_stream_error_counts_estimated_tokens(routing_env, pro_tenant):
    routing_env.scenario(KIMI, error_after=3, error_type="server_error")
    result = complete(tenant=pro_tenant, tier="auto", request=ask("hello"))
    assert result.finish_reason == "error" and result.endpoint == KIMI
    assert result.usage.output_estimated is True
    assert result.usage.output_tokens == 5  # ceil(len("Echo from kimi-k2.5:") / 4)
    assert result.usage.input_tokens > 0
    assert routing_env.models_called() == [KIMI]


def test_last_endpoint_retries_and_honours_retry_after(routing_env, pro_tenant):
    routing_env.scenario(KIMI, status=500)
    routing_env.scenario(HAIKU, status=429, retry_after=0.3, fail_times=1)
    result = complete(tenant=pro_tenant, tier="auto", request=ask())
    assert result.endpoint == HAIKU
    assert [(a.endpoint, a.outcome, a.error_kind) for a in result.attempts] == [
        (KIMI, "error", "server"), (HAIKU, "error", "rate_limited"), (HAIKU, "ok", None)]
    haiku_calls = [r["at"] for r in routing_env.requests() if r["model"] == HAIKU]
    assert haiku_calls[1] - haiku_calls[0] >= 0.3


def test_retries_stop_at_the_configured_count(routing_env, pro_tenant, settings):
    settings.ROUTING_RETRY_ATTEMPTS = 2
    routing_env.scenario(KIMI, status=529, error_type="overloaded_error")
    routing_env.scenario(HAIKU, status=529)
    with pytest.raises(AllEndpointsFailed) as caught:
        complete(tenant=pro_tenant, tier="auto", request=ask())
    assert routing_env.models_called() == [KIMI, HAIKU, HAIKU, HAIKU]
    assert caught.value.all_breakers_open is False
    assert "overloaded" in caught.value.message


def test_retry_after_beyond_the_deadline_is_not_waited_for(routing_env, pro_tenant, settings):
    settings.ROUTING_DEADLINE_SECONDS = 1.0
    routing_env.scenario(KIMI, status=500)
    routing_env.scenario(HAIKU, status=429, retry_after=30)
    with pytest.raises(AllEndpointsFailed) as caught:
        complete(tenant=pro_tenant, tier="auto", request=ask())
    assert routing_env.models_called() == [KIMI, HAIKU]
    assert "deadline" in caught.value.attempts[-1].detail


def test_deadline_bounds_a_hanging_provider(routing_env, pro_tenant, settings):
    # The overall deadline, not the endpoint's own deadline or the read timeout, must end the wait.
    settings.ROUTING_READ_TIMEOUT = settings.ROUTING_FIRST_DELTA_TIMEOUT = settings.ROUTING_STREAM_IDLE_TIMEOUT = 30.0
    settings.ROUTING_DEADLINE_SECONDS = 0.5
    routing_env.scenario(KIMI, hang=True)
    with pytest.raises(AllEndpointsFailed) as caught:
        complete(tenant=pro_tenant, tier="auto", request=ask())
    assert caught.value.attempts[0].error_kind == "timeout"
    assert caught.value.attempts[0].latency_ms < 5000
    assert HAIKU not in routing_env.models_called()  # no time was left for it


def test_moonshot_overloaded_and_rate_limit_errors_fall_back(routing_env, pro_tenant):
    routing_env.scenario(KIMI, status=429, error_type="engine_overloaded_error")
    result = complete(tenant=pro_tenant, tier="auto", request=ask())
    assert result.endpoint == HAIKU and result.attempts[0].error_kind == "overloaded"
    routing_env.scenario(KIMI, status=429, error_type="rate_limit_reached_error")
    result = complete(tenant=pro_tenant, tier="auto", request=ask())
    assert result.endpoint == HAIKU and result.attempts[0].error_kind == "rate_limited"


def test_moonshot_content_filter_is_terminal(routing_env, pro_tenant):
    routing_env.scenario(KIMI, status=400, error_type="content_filter",
                         error_message="The request was rejected because it was considered high risk")
    with pytest.raises(ProviderError) as caught:
        complete(tenant=pro_tenant, tier="auto", request=ask())
    assert caught.value.kind == "content_filter"
    assert routing_env.models_called() == [KIMI]
