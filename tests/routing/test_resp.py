"""routing.resp, the pipelined Redis client of the breaker and the rate limits: against the real Redis, and
against a silent fake server for the failure cases."""

import asyncio
import hashlib
import uuid

import pytest
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from routing.resp import ScriptClient


def run(coro):
    return asyncio.run(coro)


def test_a_script_unknown_to_the_server_runs_and_is_then_run_by_sha(redis_client):
    # A source no server has seen (the comment makes it unique), so the first call takes the EVAL path.
    script = f"-- {uuid.uuid4().hex}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"

    async def go():
        client = ScriptClient(settings.REDIS_URL, timeout=2)
        try:
            return [await client.run(script, ["kc:test:n"], [5]) for _ in range(3)]
        finally:
            await client.aclose()

    assert run(go()) == [5, 10, 15]
    assert redis_client.get("kc:test:n") == b"15"  # the URL's database was selected
    assert redis_client.script_exists(hashlib.sha1(script.encode()).hexdigest()) == [True]


def test_concurrent_commands_share_one_connection_and_each_gets_its_own_reply(redis_client):
    async def go():
        client = ScriptClient(settings.REDIS_URL, timeout=2)
        try:
            replies = await asyncio.gather(*(client.execute("ECHO", f"m{i}") for i in range(300)))
            ids = await asyncio.gather(*(client.execute("CLIENT", "ID") for _ in range(20)))
            return replies, set(ids)
        finally:
            await client.aclose()

    replies, connection_ids = run(go())
    assert replies == [f"m{i}".encode() for i in range(300)]
    assert len(connection_ids) == 1


def test_a_script_error_is_a_response_error_and_the_connection_stays_usable(redis_client):
    async def go():
        client = ScriptClient(settings.REDIS_URL, timeout=2)
        try:
            with pytest.raises(ResponseError):
                await client.run("return redis.call('NOSUCHCOMMAND')", [], [])
            return await client.execute("PING")
        finally:
            await client.aclose()

    assert run(go()) == b"PONG"


def test_a_dropped_connection_fails_its_commands_and_the_next_call_reconnects(redis_client):
    async def go():
        client = ScriptClient(settings.REDIS_URL, timeout=2)
        try:
            first_id = await client.execute("CLIENT", "ID")
            redis_client.client_kill_filter(_id=first_id)
            await asyncio.sleep(0.1)
            return first_id, await client.execute("CLIENT", "ID")
        finally:
            await client.aclose()

    first_id, second_id = run(go())
    assert second_id != first_id


class SilentServer:
    """Accepts connections and never answers."""

    async def __aenter__(self):
        self.server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def __aexit__(self, *exc):
        self.server.close()


def test_no_reply_in_time_is_a_timeout_and_drops_the_connection():
    async def go():
        async with SilentServer() as url:
            client = ScriptClient(url, timeout=0.2)
            with pytest.raises(RedisTimeoutError):
                await client.execute("PING")
            assert client._protocol is None  # a late reply must not be taken for the next command's

    run(go())


def test_nothing_listening_is_a_connection_error():
    async def go():
        async with SilentServer() as url:
            pass
        with pytest.raises(RedisConnectionError):
            await ScriptClient(url, timeout=1).execute("PING")

    run(go())
