"""The web process's one reader of all SSE streams (conversations.streams.StreamHub), against real Redis."""

import asyncio

import pytest
from asgiref.sync import async_to_sync

from conversations import streams

pytestmark = pytest.mark.django_db


async def _collect(sub, want: int) -> list[str]:
    got = []
    while len(got) < want:
        batch = await asyncio.wait_for(sub.batches.get(), 5)
        got += [fields["v"] for _id, fields in batch]
    return got


def test_one_reader_hands_every_stream_its_own_entries_once_in_order(chat_settings, chat_redis):
    keys = [streams.stream_key(f"hub{i}") for i in range(3)]
    first = chat_redis.xadd(keys[0], {"t": "d", "v": "a0"})  # already there before anyone subscribes

    async def scenario():
        hub = streams.StreamHub()
        subs = [hub.subscribe(key, "0-0") for key in keys]
        late = hub.subscribe(keys[0], first)  # a reconnect that has seen a0 already

        async def write():
            for n in range(1, 21):
                for i, key in enumerate(keys):
                    await asyncio.to_thread(chat_redis.xadd, key, {"t": "d", "v": f"{'abc'[i]}{n}"})
                await asyncio.sleep(0.002)

        writer = asyncio.create_task(write())
        results = await asyncio.gather(_collect(subs[0], 21), _collect(subs[1], 20), _collect(subs[2], 20),
                                       _collect(late, 20))
        await writer
        for sub in subs + [late]:
            hub.unsubscribe(sub)
        return results

    a, b, c, late = async_to_sync(scenario)()
    assert a == [f"a{n}" for n in range(21)]
    assert b == [f"b{n}" for n in range(1, 21)]
    assert c == [f"c{n}" for n in range(1, 21)]
    assert late == [f"a{n}" for n in range(1, 21)]


def test_the_reader_stops_when_nobody_listens(chat_settings, chat_redis):
    async def scenario():
        hub = streams.StreamHub()
        sub = hub.subscribe(streams.stream_key("hub-idle"), "0-0")
        await asyncio.sleep(0.05)
        hub.unsubscribe(sub)
        await asyncio.wait_for(hub._task, 2)  # ends after its current short read
        return hub._task.done()

    assert async_to_sync(scenario)()
