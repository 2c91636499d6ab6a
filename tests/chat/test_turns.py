"""Turns end to end: a real Celery worker, real Redis, real Postgres and the fake provider over HTTP."""

from decimal import Decimal

import pytest

from billing.models import UsageRecord
from conversations import services, turns
from conversations.models import Message
from conversations.streams import heartbeat_key, stream_key
from conversations.tasks import run_turn
from routing.cost import price_usage
from routing.types import Prices, Usage

from .conftest import integration, stream_deltas, wait_finished, wait_for

pytestmark = [integration, pytest.mark.slow]

OPUS, SONNET, KIMI, HAIKU = "claude-opus-4-6", "claude-sonnet-4-6", "kimi-k2.5", "claude-haiku-4-5"
PRICES = {
    KIMI: Prices(input=Decimal("0.60"), output=Decimal("3.00"), cache_write=Decimal("0.60"), cache_read=Decimal("0.10")),
    OPUS: Prices(input=Decimal("5"), output=Decimal("25"), cache_write=Decimal("6.25"), cache_read=Decimal("0.50")),
    SONNET: Prices(input=Decimal("3"), output=Decimal("15"), cache_write=Decimal("3.75"), cache_read=Decimal("0.30")),
}


def _send(conversation, text="What is a kiwi?"):
    return services.message_send(conversation=conversation, author=conversation.owner, text=text)


def _wait_end_marker(client, answer, status):
    def last():
        entries = client.xrevrange(stream_key(answer.pk), count=1)
        return entries and entries[0][1]

    assert wait_for(lambda: (last() or {}).get("t") == "end", what="the end marker") and last() == {
        "t": "end", "s": status}


def _assert_billed_once(message, endpoint):
    rows = list(UsageRecord.objects.filter(key=f"chat:{message.pk}"))
    assert len(rows) == 1
    row = rows[0]
    assert (row.endpoint_slug, row.source, row.user_id) == (endpoint, "chat", message.conversation.owner_id)
    assert (row.input_tokens, row.output_tokens) == (message.input_tokens, message.output_tokens)
    assert row.cost == message.cost and row.billed == message.billed
    return row


@pytest.mark.parametrize(("tier", "model"), [("auto", KIMI), ("max", OPUS)])
def test_turn_streams_in_order_and_ends_with_model_tokens_cost(fake_provider, celery_worker, alice_chat, chat_redis,
                                                               tier, model):
    text = "Kiwis are flightless birds native to New Zealand."
    fake_provider.scenario(model, {"text": text, "delay_ms": 5})
    services.conversation_set_tier(conversation=alice_chat, tier=tier)
    answer = wait_finished(_send(alice_chat).pk)

    assert answer.status == "done", answer.error
    assert answer.content == text
    assert "".join(stream_deltas(chat_redis, answer.pk)) == text  # every delta, in order
    assert len(stream_deltas(chat_redis, answer.pk)) >= 2  # streamed, not written at the end
    assert (answer.tier, answer.endpoint, answer.upstream_model) == (tier, model, model)
    assert answer.output_tokens == len(text.split())
    assert answer.input_tokens == len("What is a kiwi?".split()) + 1  # the fake counts words + 1 per message
    usage = Usage(input_tokens=answer.input_tokens, output_tokens=answer.output_tokens)
    assert answer.cost == price_usage(prices=PRICES[model], usage=usage) > 0
    assert [(a["endpoint"], a["outcome"]) for a in answer.attempts] == [(model, "ok")]
    _assert_billed_once(answer, model)
    # The stream ends with a marker and expires; the heartbeat is gone.
    _wait_end_marker(chat_redis, answer, "done")  # written just after the final commit
    assert 0 < chat_redis.ttl(stream_key(answer.pk)) <= 60
    assert not chat_redis.exists(heartbeat_key(answer.pk))


def test_second_turn_sends_the_history(fake_provider, celery_worker, alice_chat, chat_redis):
    fake_provider.scenario(KIMI, {"text": "Birds."})
    wait_finished(_send(alice_chat, "What is a kiwi?").pk)
    second = wait_finished(_send(alice_chat, "And a kea?").pk)
    # question 1 (4 words) + answer (1) + question 2 (3) + 1 per message
    assert second.input_tokens == 4 + 1 + 3 + 3


def test_primary_failing_falls_back_and_records_both_attempts(fake_provider, celery_worker, alice_chat, chat_redis):
    services.conversation_set_tier(conversation=alice_chat, tier="max")
    fake_provider.scenario(OPUS, {"status": 529, "error_type": "overloaded_error"})
    fake_provider.scenario(SONNET, {"text": "From the fallback."})
    answer = wait_finished(_send(alice_chat).pk)

    assert answer.status == "done"
    assert answer.content == "From the fallback."
    assert (answer.endpoint, answer.fallback_count) == (SONNET, 1)
    assert [(a["endpoint"], a["outcome"], a["error_kind"]) for a in answer.attempts] == [
        (OPUS, "error", "overloaded"), (SONNET, "ok", None)]
    _assert_billed_once(answer, SONNET)


def test_every_endpoint_failing_gives_a_readable_failure_and_no_charge(fake_provider, celery_worker, alice_chat,
                                                                       chat_redis):
    for model in (KIMI, HAIKU):
        fake_provider.scenario(model, {"status": 500, "error_type": "api_error"})
    answer = wait_finished(_send(alice_chat).pk)

    assert answer.status == "failed"
    assert answer.error.startswith("No model could answer right now")
    assert [a["endpoint"] for a in answer.attempts][:2] == [KIMI, HAIKU]
    assert answer.billed == 0
    assert not UsageRecord.objects.exists()
    _wait_end_marker(chat_redis, answer, "failed")


def test_stop_mid_stream_keeps_partial_text_and_bills_it_once(fake_provider, celery_worker, alice_chat, chat_redis):
    fake_provider.scenario(KIMI, {"tokens": 400, "delay_ms": 30})
    answer = _send(alice_chat)
    wait_for(lambda: len(stream_deltas(chat_redis, answer.pk)) >= 3, what="three deltas")
    services.message_stop(message=Message.objects.get(pk=answer.pk))
    seen_at_stop = len(stream_deltas(chat_redis, answer.pk))
    answer = wait_finished(answer.pk)

    deltas = stream_deltas(chat_redis, answer.pk)
    assert len(deltas) == seen_at_stop  # no delta after the stop flag was set
    assert answer.status == "cancelled"
    assert answer.content == "".join(deltas) and answer.content
    assert 3 <= answer.output_tokens < 400
    _assert_billed_once(answer, KIMI)


def test_redelivered_task_for_a_finished_turn_does_nothing(fake_provider, celery_worker, alice_chat, chat_redis):
    fake_provider.scenario(KIMI, {"text": "Only once."})
    answer = wait_finished(_send(alice_chat).pk)
    entries = chat_redis.xlen(stream_key(answer.pk))
    calls = len(fake_provider.requests())

    run_turn.delay(answer.pk)  # a redelivery through the broker
    run_turn.apply(args=[answer.pk])  # and one run right here
    wait_for(lambda: turns.wait_idle(5), what="worker idle")

    assert Message.objects.get(pk=answer.pk).content == "Only once."
    assert chat_redis.xlen(stream_key(answer.pk)) == entries
    assert len(fake_provider.requests()) == calls
    assert UsageRecord.objects.filter(key=f"chat:{answer.pk}").count() == 1


def test_duplicate_deliveries_while_running_answer_once(fake_provider, celery_worker, alice_chat, chat_redis):
    fake_provider.scenario(KIMI, {"tokens": 20, "delay_ms": 10})
    answer = _send(alice_chat)
    for _ in range(3):
        run_turn.delay(answer.pk)
    answer = wait_finished(answer.pk)
    wait_for(lambda: turns.wait_idle(5), what="worker idle")
    assert answer.status == "done"
    assert len(fake_provider.requests()) == 1
    assert UsageRecord.objects.filter(key=f"chat:{answer.pk}").count() == 1


def test_retry_answers_again_under_a_new_usage_key(fake_provider, celery_worker, alice_chat, chat_redis):
    fake_provider.scenario(KIMI, {"text": "First."})
    first = wait_finished(_send(alice_chat).pk)
    fake_provider.scenario(KIMI, {"text": "Second."})
    second = wait_finished(services.message_retry(message=first, author=alice_chat.owner).pk)
    assert (first.content, second.content) == ("First.", "Second.")
    assert second.retry_of_id == first.pk
    assert UsageRecord.objects.filter(key__in=[first.usage_key, second.usage_key]).count() == 2


def test_suspended_tenant_queued_turn_fails_without_charge(request, fake_provider, chat_settings, chat_redis,
                                                          alice_chat, acme):
    answer = _send(alice_chat)  # queued; no worker yet
    acme.status = "suspended"
    acme.save()
    request.getfixturevalue("celery_worker")
    answer = wait_finished(answer.pk)
    assert answer.status == "failed"
    assert "suspended" in answer.error
    assert fake_provider.requests() == []
    assert not UsageRecord.objects.exists()


def test_max_turns_cache_the_stable_history_and_the_ledger_prices_it(fake_provider, celery_worker, alice_chat,
                                                                     chat_redis):
    fake_provider.scenario(OPUS, {"text": "Kiwis are flightless birds of New Zealand."})
    services.conversation_set_tier(conversation=alice_chat, tier="max")
    first = wait_finished(_send(alice_chat, "What is a kiwi?").pk)
    second = wait_finished(_send(alice_chat, "And a kea?").pk)
    third = wait_finished(_send(alice_chat, "And a tui?").pk)
    sent = [r for r in fake_provider.requests() if r["model"] == OPUS]
    assert len(sent) == 3
    # A first turn has no history to cache; later ones mark the answer before the newest question.
    assert "cache_control" not in str(sent[0]["messages"])
    for request in sent[1:]:
        before_newest = request["messages"][-2]
        assert before_newest["role"] == "assistant"
        assert before_newest["content"][-1]["cache_control"] == {"type": "ephemeral"}
    rows = [_assert_billed_once(m, OPUS) for m in (first, second, third)]
    assert (rows[0].cache_write_tokens, rows[0].cache_read_tokens) == (0, 0)
    assert rows[1].cache_write_tokens > 0 and rows[1].cache_read_tokens == 0
    assert rows[2].cache_read_tokens >= rows[1].cache_write_tokens > 0
    # Opus: input 5, output 25, cache write 6.25, cache read 0.50 USD per million tokens.
    for row in rows:
        by_hand = (Decimal(row.input_tokens) * 5 + Decimal(row.output_tokens) * 25
                   + Decimal(row.cache_write_tokens) * Decimal("6.25")
                   + Decimal(row.cache_read_tokens) * Decimal("0.5")) / 1_000_000
        assert row.cost == by_hand.quantize(Decimal("0.0000000001"))


def test_auto_turns_send_no_cache_breakpoint(fake_provider, celery_worker, alice_chat, chat_redis):
    fake_provider.scenario(KIMI, {"text": "Birds."})
    wait_finished(_send(alice_chat, "What is a kiwi?").pk)
    wait_finished(_send(alice_chat, "And a kea?").pk)
    assert "cache_control" not in str([r["messages"] for r in fake_provider.requests()])
