"""Worker death (a real worker subprocess killed with SIGKILL) and the SSE stream (replay, Last-Event-ID)."""

import os
import signal

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from billing.models import UsageRecord
from conversations import services, sweeper
from conversations.models import Message
from conversations.streams import stream_key

from .conftest import integration, parse_sse, stream_deltas, wait_finished, wait_for

pytestmark = [integration, pytest.mark.slow]

KIMI = "kimi-k2.5"


def _send(conversation, text="Tell me about kiwis"):
    return services.message_send(conversation=conversation, author=conversation.owner, text=text)


def _sweep_until(predicate, what):
    """Run the beat task's sweep until `predicate` holds (the heartbeat TTL is 1 s in tests)."""

    def step():
        sweeper.turn_sweep_stale()
        return predicate()

    return wait_for(step, timeout=20, interval=0.3, what=what)


def test_sigkilled_worker_mid_turn_fails_the_turn_and_bills_exactly_once(worker_process, fake_provider, alice_chat,
                                                                         chat_redis, settings):
    fake_provider.scenario(KIMI, {"tokens": 400, "delay_ms": 30})
    worker = worker_process()
    answer = _send(alice_chat)
    wait_for(lambda: len(stream_deltas(chat_redis, answer.pk)) >= 5, timeout=30, what="deltas from the worker")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)

    _sweep_until(lambda: Message.objects.get(pk=answer.pk).is_finished, "the sweeper to end the turn")
    answer = Message.objects.get(pk=answer.pk)
    assert answer.status == "failed"
    assert "stopped" in answer.error
    assert answer.content == "".join(stream_deltas(chat_redis, answer.pk))
    assert answer.output_estimated and answer.output_tokens > 0
    rows = UsageRecord.objects.filter(key=f"chat:{answer.pk}")
    assert rows.count() == 1 and rows.get().output_estimated and rows.get().cost > 0

    # The killed worker's task is still unacknowledged in the broker; a new worker with a short visibility
    # timeout gets it redelivered, and it must change nothing.
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 1}
    os.environ["CELERY_VISIBILITY_TIMEOUT"] = "1"
    try:
        worker_process()
        wait_for(lambda: chat_redis.hlen("unacked") == 0, timeout=30, what="the redelivered task to be acked")
    finally:
        os.environ.pop("CELERY_VISIBILITY_TIMEOUT", None)
    assert UsageRecord.objects.filter(key=f"chat:{answer.pk}").count() == 1
    assert Message.objects.get(pk=answer.pk).status == "failed"


def test_sigkilled_worker_before_first_delta_requeues_and_completes(worker_process, fake_provider, alice_chat,
                                                                    chat_redis):
    fake_provider.scenario(KIMI, {"ttft_ms": 60_000})  # the first worker never sees a delta
    worker = worker_process()
    answer = _send(alice_chat)
    wait_for(lambda: Message.objects.get(pk=answer.pk).status == "streaming", timeout=30, what="the claim")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    fake_provider.scenario(KIMI, {"text": "Back from the queue."})

    _sweep_until(lambda: Message.objects.get(pk=answer.pk).status == "queued", "the sweeper to requeue")
    worker_process()
    answer = wait_finished(answer.pk, timeout=30)
    assert answer.status == "done"
    assert answer.content == "Back from the queue."
    assert answer.run_count == 2
    assert UsageRecord.objects.filter(key=f"chat:{answer.pk}").count() == 1


# --- SSE ---


async def _read(client, url, *, headers=None, stop_after_deltas=None) -> tuple[int, list[dict]]:
    response = await client.get(url, headers=headers or {})
    if response.status_code != 200:
        return response.status_code, []
    assert response["Content-Type"] == "text/event-stream"
    raw, events = "", []
    iterator = aiter(response.streaming_content)
    try:
        async for chunk in iterator:
            raw += chunk.decode()
            events = parse_sse(raw)
            deltas = [e for e in events if e.get("event") == "delta"]
            if stop_after_deltas and len(deltas) >= stop_after_deltas:
                break  # the client goes away mid-stream
            if any(e.get("event") == "final" for e in events):
                break
    finally:
        await iterator.aclose()
    return 200, events


def _stream_url(answer):
    return f"/chat/{answer.conversation_id}/messages/{answer.pk}/stream/"


def test_sse_reconnect_with_last_event_id_loses_and_repeats_nothing(celery_worker, fake_provider, alice_chat,
                                                                    alice, chat_redis):
    fake_provider.scenario(KIMI, {"tokens": 40, "delay_ms": 20})
    answer = _send(alice_chat)

    async def scenario():
        client = AsyncClient()
        await client.aforce_login(alice)
        _, first = await _read(client, _stream_url(answer), stop_after_deltas=5)
        first_deltas = [e for e in first if e["event"] == "delta"]
        _, rest = await _read(client, _stream_url(answer), headers={"Last-Event-ID": first_deltas[-1]["id"]})
        return first_deltas, rest

    first_deltas, rest = async_to_sync(scenario)()
    rest_deltas = [e for e in rest if e["event"] == "delta"]
    ids = [e["id"] for e in first_deltas + rest_deltas]
    assert len(ids) == len(set(ids))  # nothing repeated
    stream_ids = [entry_id for entry_id, f in chat_redis.xrange(stream_key(answer.pk)) if f["t"] == "d"]
    assert ids == stream_ids  # nothing lost, in order
    text = "".join(e["data"].removeprefix("<span>").removesuffix("</span>") for e in first_deltas + rest_deltas)
    answer = Message.objects.get(pk=answer.pk)
    assert text == answer.content
    final = rest[-1]
    assert final["event"] == "final"
    assert f'id="msg-{answer.pk}"' in final["data"] and "kimi-k2.5" in final["data"]
    assert 'id="conv-cost" hx-swap-oob="true"' in final["data"]


def test_sse_for_a_finished_message_sends_the_final_state_at_once(celery_worker, fake_provider, alice_chat, alice,
                                                                  chat_redis):
    fake_provider.scenario(KIMI, {"text": "Done <b>already</b>."})
    answer = wait_finished(_send(alice_chat).pk)
    chat_redis.delete(stream_key(answer.pk))  # as after the stream expired

    async def scenario():
        client = AsyncClient()
        await client.aforce_login(alice)
        return await _read(client, _stream_url(answer))

    status, events = async_to_sync(scenario)()
    assert status == 200
    assert [e["event"] for e in events] == ["final"]
    html = events[0]["data"]
    assert "kimi-k2.5" in html and "tokens" in html and "$" in html
    assert "&lt;b&gt;already&lt;/b&gt;" in html  # the model's HTML is shown as text


@pytest.mark.parametrize("intruder", ["carol", "bob"])
def test_sse_of_someone_elses_message_is_404(request, fake_provider, alice_chat, chat_redis, intruder):
    answer = _send(alice_chat)
    user = request.getfixturevalue(intruder)

    async def scenario():
        client = AsyncClient()
        await client.aforce_login(user)
        return await _read(client, _stream_url(answer))

    assert async_to_sync(scenario)()[0] == 404
