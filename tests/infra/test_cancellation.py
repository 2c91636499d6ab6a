"""A cancelled call must never hand its reply to another caller.

Hundreds of concurrent calls share a deliberately small pool (4 connections), so every connection is reused
many times; some calls are cancelled at random moments (waiting for a connection, sending, waiting for the
reply, halfway through a streamed body). Each call's reply is derived from its own arguments: the fake provider
echoes the request's words, and the Redis calls return their own key and value. Every call that completes must
get exactly its own reply, and the pool must still be in step afterwards.
"""

import asyncio
import random
import re

import orjson
import redis.asyncio as aredis
from django.conf import settings

from infra.http import aclose_provider_client, provider_send
from infra.redis import Script, aclose_redis, redis_async

MODEL = "kimi-k2.5"
HEADERS = {"authorization": "Bearer fake-moonshot-key", "content-type": "application/json"}
CALL_ID = re.compile(rb"call\d+")


def _outcomes(results: list) -> tuple[list[int], list[int]]:
    """(indexes of completed calls, indexes of cancelled ones); any other exception fails the test."""
    done, cancelled = [], []
    for i, result in enumerate(results):
        if isinstance(result, asyncio.CancelledError):
            cancelled.append(i)
        elif isinstance(result, BaseException):
            raise result
        else:
            done.append(i)
    return done, cancelled


def _cancel_some(tasks: list[asyncio.Task], rng: random.Random, *, within: float) -> None:
    """Cancel about 40 % of the tasks, each at a random moment in the next `within` seconds."""
    loop = asyncio.get_running_loop()
    for task in tasks:
        if rng.random() < 0.4:
            loop.call_later(rng.uniform(0, within), task.cancel)


async def _provider_call(url: str, i: int) -> set[bytes]:
    """The call ids in the answer to a request that says `call<i>` (even i: streamed, read chunk by chunk)."""
    stream = i % 2 == 0
    body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": f"call{i} say it back"}],
                         "stream": stream, "max_tokens": 50})
    response = await provider_send("POST", url, content=body, headers=HEADERS, stream=stream)
    if not stream:
        assert response.status_code == 200
        return set(CALL_ID.findall(response.content))
    try:
        assert response.status_code == 200
        chunks = [chunk async for chunk in response.aiter_bytes()]
    finally:
        await response.aclose()
    return set(CALL_ID.findall(b"".join(chunks)))


def test_cancelled_provider_calls_never_hand_their_reply_to_another_call(fake_provider, settings):
    settings.ROUTING_POOL_MAX_CONNECTIONS = 4
    settings.ROUTING_POOL_MAX_KEEPALIVE = 4
    fake_provider.scenario(MODEL, ttft_ms=2, delay_ms=1)  # time enough to be cancelled mid-answer
    url = f"{fake_provider.url}/v1/chat/completions"
    rng = random.Random(12)
    n = 240

    async def main():
        results = []
        for wave in range(0, n, 12):  # twelve calls at a time on four connections: most cancels hit a live call
            tasks = [asyncio.create_task(_provider_call(url, i)) for i in range(wave, wave + 12)]
            _cancel_some(tasks, rng, within=0.04)
            results += await asyncio.gather(*tasks, return_exceptions=True)
        after = [await _provider_call(url, n + i) for i in range(12)]  # the pool is still in step
        await aclose_provider_client()
        return results, after

    results, after = asyncio.run(main())
    done, cancelled = _outcomes(results)
    for i in done:
        assert results[i] == {f"call{i}".encode()}, f"call {i} got the reply of {results[i]}"
    assert after == [{f"call{n + i}".encode()} for i in range(12)]
    assert len(cancelled) >= n // 10 and len(done) >= n // 3  # about 40 % are cancelled, some after they finished
    # Some cancelled calls had reached the provider: they were cancelled mid-flight, not before they began.
    assert len([r for r in fake_provider.requests() if r["model"] == MODEL]) > len(done) + len(after)


_ECHO = Script("return {KEYS[1], ARGV[1]}")


async def _redis_call(i: int, pushes: dict[int, asyncio.Task]):
    """Three kinds of call, each answered with its own key and value: a script, a pipeline, and a blocking pop
    whose value another task pushes a moment later."""
    client = redis_async()
    key, value = f"kc:test:cancel:{i}", f"value-{i}"
    if i % 3 == 0:
        return await _ECHO.arun([key], [value])
    if i % 3 == 1:
        pipe = client.pipeline(transaction=False)
        pipe.set(key, value, ex=60)
        pipe.get(key)
        return (await pipe.execute())[1]
    pushes[i] = asyncio.create_task(_push_later(key, value, delay=random.uniform(0, 0.01)))
    return await client.blpop([key], timeout=2)


async def _push_later(key: str, value: str, *, delay: float) -> None:
    """Pushed by the test's own client: the pops may hold all of infra's connections while they wait."""
    await asyncio.sleep(delay)
    async with aredis.Redis.from_url(settings.REDIS_URL) as pusher:
        await pusher.rpush(key, value)
        await pusher.expire(key, 60)


def _expected(i: int):
    key, value = f"kc:test:cancel:{i}", f"value-{i}"
    return [[key, value], value, (key, value)][i % 3]


def test_cancelled_redis_calls_never_hand_their_reply_to_another_call(redis_client, settings):
    settings.REDIS_MAX_CONNECTIONS = 4  # infra makes new clients for the new setting
    rng = random.Random(7)
    n = 600

    async def main():
        pushes: dict[int, asyncio.Task] = {}
        results = []
        for wave in range(0, n, 12):
            tasks = [asyncio.create_task(_redis_call(i, pushes)) for i in range(wave, wave + 12)]
            _cancel_some(tasks, rng, within=0.003)
            results += await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*pushes.values())
        after = [await _redis_call(n + i, pushes) for i in range(30)]  # the pool is still in step
        await asyncio.gather(*pushes.values())
        await aclose_redis()
        return results, after

    results, after = asyncio.run(main())
    done, cancelled = _outcomes(results)
    for i in done:
        assert results[i] == _expected(i), f"call {i} got {results[i]!r}"
    assert after == [_expected(n + i) for i in range(30)]
    assert len(cancelled) >= n // 10 and len(done) >= n // 3  # about 40 % are cancelled, some after they finished
    # Some cancelled pipelines had already written: they were cancelled mid-flight, not before they began.
    written = [i for i in cancelled if i % 3 == 1 and redis_client.exists(f"kc:test:cancel:{i}")]
    assert written
