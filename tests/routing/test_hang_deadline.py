"""A provider that accepts the request and then sends nothing: the per-endpoint deadlines move the call on to the
next endpoint (time to the answer for a JSON call, time to the first text delta for a stream), and a stream that
stalls after it has started ends after the idle timeout with the text so far.

The socket read timeout and the overall deadline are set long here, so only the per-endpoint deadlines can end
the waits. The deadlines are 2 s (not sub-second: a loaded machine must not make the test flaky); the margin
above them is generous, far below what the long timeouts would take.
"""

import time

import pytest

from .conftest import ask, collect, complete

pytestmark = pytest.mark.django_db

OPUS, SONNET = "claude-opus-4-6", "claude-sonnet-4-6"
DEADLINE = 2.0
MARGIN = 3.0


@pytest.fixture
def long_waits(settings):
    settings.ROUTING_READ_TIMEOUT = 60.0
    settings.ROUTING_DEADLINE_SECONDS = 60.0
    settings.ROUTING_FIRST_BYTE_TIMEOUT = DEADLINE
    settings.ROUTING_FIRST_DELTA_TIMEOUT = DEADLINE
    settings.ROUTING_STREAM_IDLE_TIMEOUT = DEADLINE
    return settings


def _timed(fn, **kwargs):
    start = time.monotonic()
    value = fn(**kwargs)
    return value, time.monotonic() - start


@pytest.mark.parametrize(("stream", "hang"), [
    (False, {"hang": True}),  # nothing at all: no status line
    (True, {"hang": True}),
    (True, {"hang_after": 0}),  # headers and the stream's opening events, then nothing before the first delta
], ids=["json", "stream-silent", "stream-opened"])
def test_hanging_first_endpoint_falls_back_at_its_deadline(routing_env, pro_tenant, long_waits, stream, hang):
    routing_env.scenario(OPUS, hang)
    routing_env.scenario(SONNET, text="From the next endpoint.")
    result, elapsed = _timed(complete, tenant=pro_tenant, tier="max", request=ask(stream=stream))

    assert result.endpoint == SONNET and result.text == "From the next endpoint."
    assert [(a.endpoint, a.outcome, a.error_kind) for a in result.attempts] == [
        (OPUS, "error", "timeout"), (SONNET, "ok", None)]
    assert DEADLINE <= elapsed < DEADLINE + MARGIN
    assert result.fallback_count == 1


def test_stream_that_stalls_ends_after_the_idle_timeout_with_the_text_so_far(routing_env, pro_tenant, long_waits):
    routing_env.scenario(OPUS, text="one two three four five six", hang_after=3)
    start = time.monotonic()
    events = collect(tenant=pro_tenant, tier="max", request=ask())
    elapsed = time.monotonic() - start
    result = events[-1].result

    assert result.endpoint == OPUS  # no fallback once text has gone out
    assert result.text == "one two three"
    assert result.finish_reason == "error"
    assert "nothing for 2 s" in result.error
    assert [(a.endpoint, a.error_kind) for a in result.attempts] == [(OPUS, "timeout")]
    assert result.usage.output_tokens > 0 and result.cost > 0  # what was delivered is billed
    assert DEADLINE <= elapsed < DEADLINE + MARGIN
    assert routing_env.models_called() == [OPUS]


def test_a_slow_but_steady_stream_is_not_cut(routing_env, pro_tenant, long_waits):
    """The idle timeout is silence, not length: deltas 0.5 s apart for longer than the timeout all arrive."""
    routing_env.scenario(OPUS, tokens=8, delay_ms=500)
    result = complete(tenant=pro_tenant, tier="max", request=ask())
    assert result.finish_reason == "stop" and result.usage.output_tokens == 8
