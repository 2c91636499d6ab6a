"""A chat turn against a provider that hangs: the worker moves on to the next endpoint at the first-delta
deadline, not at the socket read timeout; a stream that stalls after its first deltas ends after the idle
timeout with the text so far, billed once.

The read timeout and the overall deadline are long here, so only the per-endpoint deadlines (2 s, not
sub-second) can end the waits quickly; the margin above them is generous.
"""

import time

import pytest

from billing.models import UsageRecord
from conversations import services

from .conftest import integration, stream_deltas, wait_finished

pytestmark = [integration, pytest.mark.slow]

OPUS, SONNET = "claude-opus-4-6", "claude-sonnet-4-6"
DEADLINE = 2.0
MARGIN = 4.0  # the worker's own steps (claim, commit) come on top of the provider's wait


@pytest.fixture
def long_waits(chat_settings):
    chat_settings.ROUTING_READ_TIMEOUT = 60.0
    chat_settings.ROUTING_DEADLINE_SECONDS = 60.0
    chat_settings.ROUTING_FIRST_DELTA_TIMEOUT = DEADLINE
    chat_settings.ROUTING_STREAM_IDLE_TIMEOUT = DEADLINE
    return chat_settings


def _send_max(conversation):
    services.conversation_set_tier(conversation=conversation, tier="max")
    return services.message_send(conversation=conversation, author=conversation.owner, text="What is a kiwi?")


def test_turn_whose_first_endpoint_hangs_is_answered_by_the_next_within_the_deadline(
        long_waits, fake_provider, celery_worker, alice_chat, chat_redis):
    fake_provider.scenario(OPUS, hang=True)
    fake_provider.scenario(SONNET, text="From the next endpoint.")
    start = time.monotonic()
    answer = wait_finished(_send_max(alice_chat).pk, timeout=DEADLINE + 20)
    elapsed = time.monotonic() - start

    assert answer.status == "done", answer.error
    assert answer.content == "From the next endpoint."
    assert (answer.endpoint, answer.fallback_count) == (SONNET, 1)
    assert [(a["endpoint"], a["outcome"], a["error_kind"]) for a in answer.attempts] == [
        (OPUS, "error", "timeout"), (SONNET, "ok", None)]
    assert DEADLINE <= elapsed < DEADLINE + MARGIN
    assert UsageRecord.objects.filter(key=f"chat:{answer.pk}", endpoint_slug=SONNET).count() == 1


def test_turn_whose_stream_stalls_ends_after_the_idle_timeout_with_the_text_so_far(
        long_waits, fake_provider, celery_worker, alice_chat, chat_redis):
    fake_provider.scenario(OPUS, text="one two three four five six", hang_after=3)
    start = time.monotonic()
    answer = wait_finished(_send_max(alice_chat).pk, timeout=DEADLINE + 20)
    elapsed = time.monotonic() - start

    assert "".join(stream_deltas(chat_redis, answer.pk)) == "one two three"
    assert answer.content == "one two three"
    assert answer.status == "failed" and "nothing for 2 s" in answer.error
    assert DEADLINE <= elapsed < DEADLINE + MARGIN
    rows = list(UsageRecord.objects.filter(key=f"chat:{answer.pk}"))
    assert len(rows) == 1 and rows[0].endpoint_slug == OPUS and rows[0].output_tokens > 0
