"""infra's shared clients: one sync Redis client per process, one async Redis client, one provider HTTP client
and one async Postgres pool (infra.db.aio) per event loop, and a number of Redis pools and connections that does not grow with the calls made."""

import asyncio
import os
import threading
from decimal import Decimal

import pytest
import redis
import redis.asyncio as aredis

from billing.budget import abudget_release, abudget_reserve, budget_release, budget_reserve
from infra.db.aio import aclose_pool, apool
from infra.http import aclose_provider_client, provider_client
from infra.redis import Script, aclose_redis, arun_scripts, redis_async, redis_sync
from kiwiclaw.health import _check_redis
from proxy.auth import KeyIdentity
from proxy.ratelimit import arate_limit_settle, arate_limit_take, mark_revoked
from routing.breaker import (
    breaker_record_failure,
    breaker_record_success,
    breaker_states,
    breaker_states_sync,
)
from tests.factories import PlanFactory, TenantFactory

SLUGS = ["claude-opus-4-6", "kimi-k2.5"]


def _in_new_loop(coro_fn):
    """Run coro_fn() in a fresh event loop of a new thread (as the chat worker's loops run)."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(value=asyncio.run(coro_fn())))
    thread.start()
    thread.join()
    return out["value"]


@pytest.mark.django_db(transaction=True)
def test_the_same_loop_gets_the_same_clients_and_two_loops_get_two():
    async def clients():
        first = (redis_async(), provider_client(), await apool())
        await asyncio.sleep(0)
        assert (redis_async(), provider_client(), await apool()) == first
        async with first[2].connection() as conn:  # the Postgres pool opens on first use and answers
            assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)
        await aclose_redis()
        await aclose_provider_client()
        await aclose_pool()
        return first

    one, two = _in_new_loop(clients), _in_new_loop(clients)
    assert one[0] is not two[0] and one[0].connection_pool is not two[0].connection_pool
    assert one[1] is not two[1]
    assert one[2] is not two[2]


def test_the_sync_client_is_one_per_process_whatever_the_thread():
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(redis_sync())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in seen}) == 1
    assert seen[0] is redis_sync()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_a_forked_child_builds_its_own_sync_client(redis_client):
    parent = redis_sync()
    parent.ping()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running any of pytest's teardown
        try:
            child = redis_sync()
            ok = child is not parent and child.ping() and child.client_getname() == f"kiwiclaw:{os.getpid()}"
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert redis_sync() is parent


def _our_connections() -> int:
    name = f"kiwiclaw:{os.getpid()}"
    return sum(1 for client in redis_sync().client_list() if client.get("name") == name)


@pytest.fixture
def count_pools(monkeypatch):
    """Every Redis connection pool made while the test runs (sync and async)."""
    made = []
    for cls in (redis.BlockingConnectionPool, aredis.BlockingConnectionPool, redis.ConnectionPool,
                aredis.ConnectionPool):
        original = cls.__init__

        def counting(self, *args, _original=original, **kwargs):
            if not any(pool is self for pool in made):  # a blocking pool's __init__ calls its base class's
                made.append(self)
            _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counting)
    return made


@pytest.mark.django_db
def test_breaker_ratelimit_and_budget_calls_reuse_one_pool_per_loop(redis_client, count_pools):
    plan = PlanFactory(slug="capped-limited", monthly_cap=Decimal("100"), rpm_key=1000, tpm_key=100000)
    tenant = TenantFactory(plan=plan)
    identity = KeyIdentity(key_id=7, user=None, membership=None, tenant=tenant)

    def sync_round(i):
        breaker_states_sync(SLUGS)
        mark_revoked(1000 + i)
        budget_reserve(tenant=tenant, key=f"sync:{i}", cost=Decimal("0.01"))
        budget_release(tenant=tenant, key=f"sync:{i}")
        assert _check_redis() == "ok"

    async def async_round(i):
        await breaker_states(SLUGS)
        await breaker_record_failure(SLUGS[0])
        await breaker_record_success(SLUGS[0])
        assert (await arate_limit_take(identity, tokens=10)).allowed
        await arate_limit_settle(identity, tokens=5)
        await abudget_reserve(tenant=tenant, key=f"async:{i}", cost=Decimal("0.01"))
        await abudget_release(tenant=tenant, key=f"async:{i}")

    sync_round(0)  # the process's sync client exists from here on
    pools_before = len(count_pools)

    async def main():
        await async_round(0)
        pools, connections = len(count_pools), _our_connections()
        client = redis_async()
        for i in range(1, 20):
            await async_round(i)
            sync_round(i)
        assert redis_async() is client
        after = len(count_pools), _our_connections()
        await aclose_redis()
        return pools, connections, after

    pools, connections, after = asyncio.run(main())
    assert pools == pools_before + 1  # this loop's one async pool; no other pool, sync or async
    assert after == (pools, connections)  # nineteen rounds later: no new pool, no new connection


def test_a_script_runs_by_sha_and_loads_itself_when_the_server_does_not_know_it(redis_client):
    def new_script():  # a source the server has never seen (SCRIPT FLUSH would disturb other users of the server)
        return Script(f"-- {os.urandom(8).hex()}\nreturn {{KEYS[1], ARGV[1] * 2}}")

    script = new_script()
    assert redis_client.script_exists(script.sha) == [False]
    assert script.run(["kc:a"], [21]) == ["kc:a", 42]
    assert redis_client.script_exists(script.sha) == [True]
    assert script.run(["kc:a"], [1]) == ["kc:a", 2]
    script = new_script()

    async def main():
        value = await script.arun(["kc:b"], [4])
        await aclose_redis()
        return value

    assert asyncio.run(main()) == ["kc:b", 8]


def test_scripts_sent_together_answer_in_order_known_to_the_server_or_not(redis_client):
    known = Script(f"-- {os.urandom(8).hex()}\nreturn ARGV[1] + 1")
    known.run([], [0])
    unknown = Script(f"-- {os.urandom(8).hex()}\nreturn {{KEYS[1], ARGV[1]}}")
    failing = Script(f"-- {os.urandom(8).hex()}\nreturn redis.error_reply('no such thing')")

    async def main():
        try:
            replies = await arun_scripts((known, [], [41]), (unknown, ["kc:x"], ["y"]))
            lone = Script(f"-- {os.urandom(8).hex()}\nreturn ARGV[1] * 2")  # one script alone, unknown at first
            assert await arun_scripts((lone, [], [21])) == [42]
            with pytest.raises(redis.ResponseError, match="no such thing"):
                await arun_scripts((known, [], [1]), (failing, [], []))
            return replies
        finally:
            await aclose_redis()

    assert asyncio.run(main()) == [42, ["kc:x", "y"]]
    assert redis_client.script_exists(unknown.sha) == [True]


def test_provider_calls_skip_the_client_layer_only_when_no_proxy_applies(monkeypatch):
    """Without proxy variables a call goes straight to the transport; with one, through httpx's client, which
    routes it through the proxy (infra/http.py)."""
    from infra import http

    async def direct_transport():
        try:
            return http._clients.get().direct
        finally:
            await aclose_provider_client()

    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert _in_new_loop(direct_transport) is not None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert _in_new_loop(direct_transport) is None
