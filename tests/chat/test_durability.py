"""Finding 3: a chat turn whose answer streamed completely while Postgres went away is stored `done` with its
real token counts once the database is back — not failed by the sweeper and billed an estimate.

And a Redis restart's marks on a running turn (its heartbeat and stream gone): the turn is not judged dead.

The worker is a real Celery worker (threads, in this process); the outage is real (tests/db_faults.py).
"""

import pytest

from billing import outbox
from billing.models import UsageRecord
from conversations import services, streams, sweeper
from conversations.models import Message
from tests.db_faults import database_unavailable

from .conftest import integration, stream_deltas, wait_for

pytestmark = [integration, pytest.mark.slow]

KIMI = "kimi-k2.5"


def test_a_redis_restart_does_not_make_running_turns_look_dead(celery_worker, fake_provider, alice_chat,
                                                               chat_redis, settings, monkeypatch):
    """A restart loses every heartbeat and stream; a sweep right after must not end the turns still answering.

    The restart itself is the drill's (bench/drills/redis_restart.py restarts a real Redis); here the turn's keys
    are deleted and the server's start time is what a restart a moment ago would report."""
    import time

    # The heartbeat is written once and then lapses (TTL 1 s): like a key lost with a restart, deterministically.
    settings.CHAT_HEARTBEAT_INTERVAL = 60
    fake_provider.scenario(KIMI, {"tokens": 80, "delay_ms": 50})  # about 4 s
    answer = services.message_send(conversation=alice_chat, author=alice_chat.owner, text="Tell me about kiwis")
    wait_for(lambda: stream_deltas(chat_redis, answer.pk), timeout=30, what="the first deltas")
    wait_for(lambda: not streams.heartbeat_alive(answer.pk), timeout=10, what="the heartbeat to lapse")
    chat_redis.delete(streams.stream_key(answer.pk))
    wait_for(lambda: stream_deltas(chat_redis, answer.pk), timeout=10, what="deltas on the new stream")
    monkeypatch.setattr(streams, "redis_started_at", lambda: time.time() - 0.5, raising=False)
    counts = sweeper.turn_sweep_stale()
    assert counts == {"failed": 0, "requeued": 0, "rescued": 0}
    monkeypatch.undo()

    answer = wait_for(lambda: (m := Message.objects.get(pk=answer.pk)).is_finished and m, timeout=30,
                      what="the turn to finish")
    assert answer.status == Message.STATUS_DONE and answer.output_tokens == 80
    assert UsageRecord.objects.filter(key=answer.usage_key).count() == 1


def test_turn_whose_end_meets_a_database_outage_is_stored_done_with_its_real_counts(
        celery_worker, fake_provider, alice_chat, chat_redis, settings):
    from django.db import connection

    # The worker's own replayer would apply the end as soon as the database is back; holding it off lets the
    # sweeper meet the waiting turn first, the order that lost the answer before.
    settings.OUTBOX_RETRY_INTERVAL = 3600
    fake_provider.scenario(KIMI, {"tokens": 40, "delay_ms": 50})  # about 2 s of answer
    answer = services.message_send(conversation=alice_chat, author=alice_chat.owner, text="Tell me about kiwis")
    wait_for(lambda: stream_deltas(chat_redis, answer.pk), timeout=30, what="the first deltas")

    with database_unavailable(keep=connection):
        # The answer streams to its end; its final write fails, and the turn's end is kept in the outbox.
        wait_for(lambda: outbox.pending(answer.usage_key), timeout=40, what="the turn's end in the outbox")
        assert Message.objects.get(pk=answer.pk).status == Message.STATUS_STREAMING
        # Its heartbeat has lapsed: to the sweeper, this looks like a dead worker's turn.
        wait_for(lambda: not streams.heartbeat_alive(answer.pk), timeout=10, what="the heartbeat to lapse")

    counts = sweeper.turn_sweep_stale()
    assert counts["failed"] == 0

    answer = Message.objects.get(pk=answer.pk)
    assert answer.status == Message.STATUS_DONE
    assert answer.output_tokens == 40 and answer.output_estimated is False
    assert answer.content == "".join(stream_deltas(chat_redis, answer.pk))
    assert answer.endpoint == KIMI and answer.error == ""
    rows = list(UsageRecord.objects.filter(key=answer.usage_key))
    assert len(rows) == 1
    assert rows[0].output_tokens == 40 and rows[0].output_estimated is False
    assert answer.billed == rows[0].billed > 0
    assert not outbox.pending(answer.usage_key)
    # The stream says the turn ended, so a reader waiting on it is told at once.
    assert chat_redis.xrevrange(streams.stream_key(answer.pk), count=1)[0][1] == {"t": "end", "s": "done"}

    # Later sweeps, and a second drain, change nothing.
    assert sweeper.turn_sweep_stale()["failed"] == 0
    outbox.drain()
    assert UsageRecord.objects.filter(key=answer.usage_key).count() == 1
    assert Message.objects.get(pk=answer.pk).status == Message.STATUS_DONE
