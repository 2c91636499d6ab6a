"""The routing core's own work per request, with the fake provider at zero latency.

    DJANGO_SECRET_KEY=x DATABASE_URL=postgres://... REDIS_URL=redis://.../5 .venv/bin/python bench/routing_overhead.py

Needs a migrated database (the catalog is read once, then cached like in production) and Redis (breaker).
Prints medians and p90 of:
  - policy: validation + policy decision (pure)
  - breaker: the Redis round trips of a healthy request (state read + success record)
  - build+parse: building the upstream request and parsing a 12-delta SSE stream (Anthropic and OpenAI)
  - end to end: route_stream through real loopback HTTP, and the same HTTP call made directly with httpx;
    the difference is the core's overhead including its event plumbing.
"""

import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from infra.http import provider_client  # noqa: E402
from routing import breaker  # noqa: E402
from routing.catalog import catalog_get  # noqa: E402
from routing.core import route_stream, validate_request  # noqa: E402
from routing.cost import estimate_prompt_tokens  # noqa: E402
from routing.policy import policy_decide  # noqa: E402
from routing.providers import anthropic, openai_compat  # noqa: E402
from routing.sse import SSEDecoder  # noqa: E402
from routing.types import ChatMessage, ChatRequest  # noqa: E402
from tenants.models import Plan, Tenant  # noqa: E402

N = int(os.environ.get("BENCH_N", "500"))
REQUEST = ChatRequest(messages=[ChatMessage("user", "Tell me about kiwis, briefly please.")], max_tokens=256)


def stats(name, samples_s):
    ms = sorted(s * 1000 for s in samples_s)
    print(f"{name:<46} median {statistics.median(ms):7.3f} ms   p90 {ms[int(len(ms) * 0.9)]:7.3f} ms   (n={len(ms)})")
    return statistics.median(ms)


def timeit(fn, n=N):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


async def atimeit(fn, n=N):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


def recorded_stream(proto) -> list[str]:
    """A 12-delta stream as the fake provider sends it, captured once over HTTP."""
    import httpx

    if proto == "anthropic":
        up = anthropic.build_request(base_url=settings.ANTHROPIC_BASE_URL, api_key="k", model="claude-opus-4-6",
                                     request=REQUEST, stream=True, max_tokens=256)
    else:
        up = openai_compat.build_request(base_url=settings.MOONSHOT_BASE_URL, api_key="k", model="kimi-k2.5",
                                         request=REQUEST, stream=True, max_tokens=256)
    return httpx.post(up.url, json=up.body, headers=up.headers).text.splitlines()


def build_and_parse(adapter, lines, base_url, model):
    adapter.build_request(base_url=base_url, api_key="k", model=model, request=REQUEST, stream=True, max_tokens=256)
    state, decoder = adapter.new_stream_state(), SSEDecoder()
    for line in lines:
        item = decoder.feed(line)
        if item is not None:
            adapter.parse_stream_event(state, *item)


async def main():
    proc = subprocess.Popen([sys.executable, "-m", "devtools.fake_provider", "--port", "0"], stdout=subprocess.PIPE,
                            text=True, cwd=str(settings.BASE_DIR))
    url = proc.stdout.readline().split(" ", 1)[1].strip()
    settings.ANTHROPIC_BASE_URL, settings.MOONSHOT_BASE_URL = url, f"{url}/v1"
    settings.ANTHROPIC_API_KEY = settings.MOONSHOT_API_KEY = "bench"
    settings.ROUTING_CATALOG_TTL_SECONDS = 3600
    try:
        catalog = await asyncio.to_thread(catalog_get)
        # A Pro-shaped plan without the cap downgrade: the spend lookup is billing's cost, measured by billing.
        plan = Plan(slug="bench", name="Bench", allowed_tiers=["auto", "max"], max_to_auto_share=None)
        tenant = Tenant(slug="bench", name="Bench", plan=plan)
        health = await breaker.breaker_states(list(catalog.endpoints))

        def policy():
            validate_request(tier="max", request=REQUEST)
            policy_decide(catalog=catalog, tier="max", plan=plan, spend=None,
                          prompt_tokens=estimate_prompt_tokens(REQUEST), max_tokens=256, health=health)

        print(f"routing core overhead, {N} requests each, fake provider at zero latency ({url})\n")
        p = stats("policy (validate + decide)", timeit(policy))

        async def breaker_io():
            await breaker.breaker_states(list(catalog.endpoints))
            await breaker.breaker_record_success("claude-opus-4-6")

        b = stats("breaker (state read + success record, Redis)", await atimeit(breaker_io))
        a_lines, o_lines = await asyncio.to_thread(recorded_stream, "anthropic"), await asyncio.to_thread(
            recorded_stream, "openai")
        a = stats("build+parse Anthropic (12 deltas)", timeit(
            lambda: build_and_parse(anthropic, a_lines, url, "claude-opus-4-6")))
        o = stats("build+parse OpenAI-compatible (12 deltas)", timeit(
            lambda: build_and_parse(openai_compat, o_lines, f"{url}/v1", "claude-opus-4-6")))
        print(f"{'=> core work per request (policy+breaker+build/parse)':<46} median {p + b + max(a, o):7.3f} ms\n")

        client = provider_client()
        up = anthropic.build_request(base_url=url, api_key="k", model="claude-opus-4-6", request=REQUEST,
                                     stream=True, max_tokens=256)

        async def direct():
            async with client.stream("POST", up.url, json=up.body, headers=up.headers) as r:
                async for _ in r.aiter_lines():
                    pass

        async def routed():
            async for _ in route_stream(tenant=tenant, tier="max", request=REQUEST):
                pass

        for _ in range(50):  # warm the pool and the fake provider
            await direct()
            await routed()
        # Interleaved, so load from other processes on the machine hits both alike.
        direct_s, routed_s, diffs = [], [], []
        for _ in range(N):
            t0 = time.perf_counter()
            await direct()
            t1 = time.perf_counter()
            await routed()
            t2 = time.perf_counter()
            direct_s.append(t1 - t0)
            routed_s.append(t2 - t1)
            diffs.append((t2 - t1) - (t1 - t0))
        stats("end to end: direct httpx stream", direct_s)
        stats("end to end: route_stream", routed_s)
        stats("=> route_stream minus direct (paired)", diffs)
        await fallback_cost(client, url, tenant)
    finally:
        proc.terminate()
        proc.wait()


async def fallback_cost(client, url, tenant):
    """What a fallback adds: MAX with its first endpoint (Opus) answering 529 at once, so Sonnet answers, against
    asking Sonnet directly by name. Goal: under 50 ms at the median. The breaker is kept closed (a huge
    threshold) so every request really tries Opus first."""
    settings.ROUTING_BREAKER_THRESHOLD = 10**9
    tenant.plan.api_models_allowed = True
    await breaker.breaker_record_success("claude-opus-4-6")
    await client.post(f"{url}/_control/scenario", json={"model": "claude-opus-4-6", "status": 529})

    async def via_fallback():
        async for event in route_stream(tenant=tenant, tier="max", request=REQUEST):
            last = event
        assert last.result.endpoint == "claude-sonnet-4-6" and last.result.fallback_count == 1

    async def sonnet_directly():
        async for _ in route_stream(tenant=tenant, tier="max", request=REQUEST, model="claude-sonnet-4-6"):
            pass

    for _ in range(20):
        await via_fallback()
        await sonnet_directly()
    fallback_s, direct_s, diffs = [], [], []
    for _ in range(N):
        t0 = time.perf_counter()
        await sonnet_directly()
        t1 = time.perf_counter()
        await via_fallback()
        t2 = time.perf_counter()
        direct_s.append(t1 - t0)
        fallback_s.append(t2 - t1)
        diffs.append((t2 - t1) - (t1 - t0))
    print()
    stats("fallback: Sonnet asked directly", direct_s)
    stats("fallback: MAX, Opus 529 -> Sonnet", fallback_s)
    stats("=> a fallback adds (paired; goal < 50 ms)", diffs)
    await client.post(f"{url}/_control/reset")


if __name__ == "__main__":
    asyncio.run(main())
