"""The cost of a 20-turn MAX conversation with and without prompt caching, at the catalog's Opus prices, through
the real routing path (routing.core.route_complete → the Anthropic adapter → the fake provider over loopback HTTP).

    DJANGO_SECRET_KEY=bench DATABASE_URL=postgres://postgres@127.0.0.1:5432/kc_proxy \
        REDIS_URL=redis://127.0.0.1:6379/7 .venv/bin/python bench/prompt_caching.py [--turns 20]

Needs a migrated database (the catalog) and Redis (breakers). Each turn sends the whole history plus a new user
message of USER_WORDS words; the fake answers ANSWER_TOKENS tokens. With caching, ChatRequest.cache_breakpoint
puts a breakpoint at the end of the stable history (the message before the newest user turn), which the chat turn
sets on MAX; the fake provider reports cache writes and reads the way Anthropic does (devtools/fake_provider/
features.py: the longest prefix cached by an earlier request is read, the rest up to the breakpoint written).
The fake counts one token per word and does not apply Anthropic's minimum cacheable length (1024+ tokens),
so a real conversation caches nothing until its history passes that length.
"""

import argparse
import asyncio
import os
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from procs import start_fake_provider, stop  # noqa: E402

from routing.catalog import catalog_get  # noqa: E402
from routing.core import route_complete  # noqa: E402
from routing.types import ChatMessage, ChatRequest, Usage  # noqa: E402
from tenants.models import Plan, Tenant  # noqa: E402

USER_WORDS = 150
ANSWER_TOKENS = 300
WORDS = ("kiwi", "fern", "harbour", "ridge", "tide", "glacier", "tussock", "river", "summit", "bay")


def user_message(turn: int) -> str:
    return f"Turn {turn}: " + " ".join(WORDS[(turn + i) % len(WORDS)] for i in range(USER_WORDS))


async def conversation(*, tenant, turns: int, cache: bool) -> tuple[Decimal, Usage, list[Decimal]]:
    history: list[ChatMessage] = []
    total, per_turn = Decimal(0), []
    usage = Usage()
    for turn in range(1, turns + 1):
        history.append(ChatMessage("user", user_message(turn)))
        result = await route_complete(tenant=tenant, tier="max", request=ChatRequest(
            messages=tuple(history), max_tokens=1024, stream=True, cache_breakpoint=cache))
        assert result.endpoint == "claude-opus-4-6", result.reason
        history.append(ChatMessage("assistant", result.text))
        total += result.cost
        per_turn.append(result.cost)
        u = result.usage
        usage = Usage(input_tokens=usage.input_tokens + u.input_tokens,
                      output_tokens=usage.output_tokens + u.output_tokens,
                      cache_read_tokens=usage.cache_read_tokens + u.cache_read_tokens,
                      cache_write_tokens=usage.cache_write_tokens + u.cache_write_tokens)
    return total, usage, per_turn


async def main(turns: int) -> None:
    proc, url = start_fake_provider()
    settings.ANTHROPIC_BASE_URL, settings.MOONSHOT_BASE_URL = url, f"{url}/v1"
    settings.ANTHROPIC_API_KEY = settings.MOONSHOT_API_KEY = "bench"
    try:
        catalog = await asyncio.to_thread(catalog_get)
        prices = catalog.endpoints["claude-opus-4-6"].prices
        plan = Plan(slug="bench", name="Bench", allowed_tiers=["auto", "max"], max_to_auto_share=None)
        tenant = Tenant(slug="bench", name="Bench", plan=plan)
        print(f"{turns}-turn MAX conversation on claude-opus-4-6 (catalog prices per million tokens: input "
              f"{prices.input}, output {prices.output}, cache write {prices.cache_write}, cache read "
              f"{prices.cache_read}); {USER_WORDS}-word user turns, {ANSWER_TOKENS}-token answers\n")
        rows = []
        with httpx.Client(base_url=url) as control:
            for cache in (False, True):
                control.post("/_control/reset").raise_for_status()
                control.post("/_control/scenario", json={"model": "claude-opus-4-6", "tokens": ANSWER_TOKENS})
                total, usage, per_turn = await conversation(tenant=tenant, turns=turns, cache=cache)
                rows.append((cache, total, usage, per_turn))
        print(f"{'':<18}{'input':>9}{'cache write':>13}{'cache read':>12}{'output':>9}{'cost USD':>15}"
              f"{'last turn':>12}")
        for cache, total, usage, per_turn in rows:
            print(f"{'with caching' if cache else 'without caching':<18}{usage.input_tokens:>9}"
                  f"{usage.cache_write_tokens:>13}{usage.cache_read_tokens:>12}{usage.output_tokens:>9}"
                  f"{total:>15.6f}{per_turn[-1]:>12.6f}")
        saved = rows[0][1] - rows[1][1]
        print(f"\ncaching saves {saved:.6f} USD ({saved / rows[0][1] * 100:.1f} %) over {turns} turns")
    finally:
        stop(proc)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    asyncio.run(main(parser.parse_args().turns))
