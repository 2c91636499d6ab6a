"""Drill: the first endpoint of the chain accepts every call and sends nothing; print how long /v1 calls
(JSON and streamed) and chat turns take to fall back to the next endpoint, and what was served and billed.

    .venv/bin/python bench/drills/provider_hang.py              # the machine's Postgres and Redis
    .venv/bin/python bench/drills/provider_hang.py --embedded   # throwaway servers (development)

The stack (bench/drills/stack.py): the fake provider, the web app served as docs/operations.md says (granian)
and a Celery worker, on a database of the drill's own. Calls name the MAX tier, whose chain is
claude-opus-4-6 → claude-sonnet-4-6 → kimi-k2.5; the fake provider hangs on claude-opus-4-6 (it holds the
connection open and never answers) and answers normally on the others. Nothing is restarted.

Two phases, each with its own web server and worker:
1. "deadline": the circuit breaker kept closed (a threshold no run reaches), so every call waits out the
   first endpoint's deadline (ROUTING_FIRST_BYTE_TIMEOUT for JSON, ROUTING_FIRST_DELTA_TIMEOUT for streams,
   --deadline seconds; production's default is 10) before it falls back. --clients concurrent /v1 clients
   (half JSON, half streaming) make --rounds calls each, while --turns chat turns run.
2. "breaker": production's breaker settings; the same clients call for --breaker-seconds (both phases at most
   --per-minute calls a minute, under the plan's rate limit). After
   ROUTING_BREAKER_THRESHOLD timeouts the endpoint is skipped for the cool-down, so most calls do not wait
   at all; a half-open trial waits out the deadline again now and then.

Time to fallback: a streamed /v1 call, the time to its response headers (sent with the first delta of the
endpoint that answers); a JSON call, the time to its whole answer (the fake answers JSON at once); a chat
turn, how long its attempt at the hung endpoint took (the decision log's latency). "Over the deadline" is that
time minus the deadline. Figures per phase: p50 / p95 / max, answers served, usage rows, answers without
exactly one usage row, double charges, turns unfinished.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
from common import (
    Backing,
    Outcome,
    Stack,
    _pg,
    arg_parser,
    log,
    make_fixture,
    print_figures,
    tally,
    wait_turns_finished,
    wait_until,
)

HUNG, NEXT = "claude-opus-4-6", "claude-sonnet-4-6"
PROMPT = [{"role": "user", "content": "drill: tell me a story"}]
# Django's CSRF secret: exactly 32 letters and digits (common.Fixture's default has 33, which Django refuses).
CSRF = "drillcsrf0123456789abcdefghijklm"


def percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return f"p50 {statistics.median(values):.2f} s, p95 {p95:.2f} s, max {values[-1]:.2f} s (n={len(values)})"


def set_scenarios(fake_url: str, *, tokens: int, delay_ms: int) -> None:
    with httpx.Client(base_url=fake_url) as client:
        client.post("/_control/reset").raise_for_status()
        for model in ("claude-sonnet-4-6", "claude-haiku-4-5", "kimi-k2.5"):
            client.post("/_control/scenario", json={"model": model, "tokens": tokens, "delay_ms": delay_ms}
                        ).raise_for_status()
        client.post("/_control/scenario", json={"model": HUNG, "hang": True}).raise_for_status()


async def one_call(client: httpx.AsyncClient, api_key: str, *, stream: bool) -> dict:
    """One /v1 call on the MAX tier: its outcome, request id, seconds to the answer's start, fallback header."""
    body = {"model": "max", "stream": stream, "messages": PROMPT}
    headers = {"Authorization": f"Bearer {api_key}"}
    start = time.monotonic()
    try:
        if stream:
            async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                started = time.monotonic() - start
                text = (await r.aread()).decode()
                ok = r.status_code == 200 and "data: [DONE]" in text
        else:
            r = await client.post("/v1/chat/completions", json=body, headers=headers)
            started = time.monotonic() - start
            ok = r.status_code == 200 and bool(r.json().get("usage"))
    except httpx.HTTPError as exc:
        return {"outcome": type(exc).__name__, "rid": "", "stream": stream, "started": None, "fallback": None}
    return {"outcome": "ok" if ok else f"http {r.status_code}", "rid": r.headers.get("x-request-id", ""),
            "stream": stream, "started": started, "fallback": r.headers.get("x-kiwiclaw-fallback"),
            "model": r.headers.get("x-kiwiclaw-model")}


async def drive(web_url: str, api_key: str, *, clients: int, rounds: int | None, seconds: float | None,
                per_minute: int) -> list[dict]:
    """`clients` concurrent callers (even ones JSON, odd ones streaming), each calling for `rounds` calls or
    until `seconds` have passed, together at most `per_minute` calls a minute (below the plan's rate limit)."""
    interval = clients * 60 / per_minute
    results: list[dict] = []
    end = time.monotonic() + seconds if seconds else None
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    async with httpx.AsyncClient(base_url=web_url, timeout=120, limits=limits) as client:
        async def caller(i: int):
            n = 0
            while (rounds is None or n < rounds) and (end is None or time.monotonic() < end):
                began = time.monotonic()
                results.append(await one_call(client, api_key, stream=i % 2 == 1))
                n += 1
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

        await asyncio.gather(*(caller(i) for i in range(clients)))
    return results


def post_turns(web_url: str, fixture, count: int) -> list[int]:
    from common import chat_turn

    ids = []
    with httpx.Client(base_url=web_url) as client:
        for _ in range(count):
            outcome, mid = chat_turn(client, fixture, fixture.next_conversation())
            if mid is not None:
                ids.append(mid)
            else:
                log(f"chat turn not posted: {outcome}")
    return ids


def turn_fallbacks(message_ids: list[int]) -> tuple[list[float], dict[str, int]]:
    """Seconds each turn spent on the hung endpoint (its attempt's latency), and which endpoint answered."""
    if not message_ids:
        return [], {}
    rows = _pg("SELECT endpoint, attempts FROM conversations_message WHERE id = ANY(%s)", [message_ids])
    waits, answered = [], {}
    for endpoint, attempts in rows:
        answered[endpoint or "(none)"] = answered.get(endpoint or "(none)", 0) + 1
        hung = next((a for a in attempts or [] if a.get("endpoint") == HUNG and a.get("outcome") == "error"), None)
        if hung is not None and hung.get("latency_ms") is not None:
            waits.append(hung["latency_ms"] / 1000)
    return waits, answered


def phase(name: str, backing: Backing, args, extra_env: dict[str, str], *, rounds: int | None,
          seconds: float | None, turns: int) -> None:
    """One phase on a fresh database and Redis db, with its own processes."""
    env = {"ROUTING_FIRST_BYTE_TIMEOUT": str(args.deadline), "ROUTING_FIRST_DELTA_TIMEOUT": str(args.deadline),
           **extra_env}
    stack = Stack(backing, web_workers=args.web_workers, extra_env=env)
    try:
        _close_django_connections()  # the previous phase's, to the database reset drops
        backing.reset()
        stack.migrate()
        stack.start_fake(tokens=args.tokens, delay_ms=args.delay_ms)
        set_scenarios(stack.fake.url, tokens=args.tokens, delay_ms=args.delay_ms)
        fixture = make_fixture(stack, conversations=max(turns, 1), tier="max")
        fixture.csrf = CSRF
        stack.start_web()
        if turns:
            stack.start_worker()
        log(f"{name}: web {stack.web.url}; {args.clients} /v1 clients, {turns} chat turns; first endpoint hangs")
        t0 = time.monotonic()
        turn_ids = post_turns(stack.web.url, fixture, turns) if turns else []
        results = asyncio.run(drive(stack.web.url, fixture.api_key, clients=args.clients, rounds=rounds,
                                    seconds=seconds, per_minute=args.per_minute))
        log(f"{name}: {len(results)} /v1 calls in {time.monotonic() - t0:.1f} s; waiting for the turns")
        left = wait_turns_finished(fixture, timeout=120)
        outcomes = [Outcome(0.0, "api-stream" if r["stream"] else "api", r["outcome"], r["rid"]) for r in results]
        figures = tally(fixture, outcomes, settle=2.0)
        waits, answered = turn_fallbacks(turn_ids)
        ok = [r for r in results if r["outcome"] == "ok"]
        for label, stream in (("JSON", False), ("streamed", True)):
            mine = [r for r in ok if r["stream"] is stream]
            waited = [r["started"] for r in mine if r["fallback"] == "1"]
            skipped = [r["started"] for r in mine if r["fallback"] == "0"]
            figures[f"/v1 {label}: time to fallback (waited on the hung endpoint)"] = percentiles(waited)
            figures[f"/v1 {label}: over the deadline"] = percentiles([w - args.deadline for w in waited])
            if skipped:
                figures[f"/v1 {label}: answer start when the breaker skipped it"] = percentiles(skipped)
            figures[f"/v1 {label}: answered by"] = _count(r["model"] for r in mine)
        if turns:
            figures["chat turns: time to fallback (attempt at the hung endpoint)"] = percentiles(waits)
            figures["chat turns: answered by"] = answered
        figures["turns left unfinished after 120 s"] = left
        print_figures(f"provider hang, {name} (deadline {args.deadline:g} s)", figures)
        stack.save_logs(f"drill-provider-hang-{name}")
    finally:
        stack.stop()


def _close_django_connections() -> None:
    from django.apps import apps

    if not apps.ready:
        return
    from django.db import connections

    for conn in connections.all():
        conn.close()
        close_pool = getattr(conn, "close_pool", None)
        if close_pool is not None:
            close_pool()


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[str(item)] = out.get(str(item), 0) + 1
    return out


def main() -> int:
    parser = arg_parser(__doc__.split("\n\n")[0])
    parser.set_defaults(database="kc_drill_hang", tokens=20, delay_ms=10)
    parser.add_argument("--deadline", type=float, default=10.0,
                        help="ROUTING_FIRST_BYTE_TIMEOUT and ROUTING_FIRST_DELTA_TIMEOUT, seconds")
    parser.add_argument("--clients", type=int, default=16, help="concurrent /v1 clients")
    parser.add_argument("--rounds", type=int, default=3, help="calls per client in the deadline phase")
    parser.add_argument("--turns", type=int, default=16, help="chat turns in the deadline phase")
    parser.add_argument("--per-minute", type=int, default=800,
                        help="/v1 calls a minute at most (the Enterprise plan allows 1000 per key)")
    parser.add_argument("--breaker-seconds", type=float, default=45.0, help="length of the breaker phase")
    args = parser.parse_args()

    backing = Backing(embedded=args.embedded, var_dir=args.var_dir, database=args.database, redis_db=args.redis_db)
    try:
        wait_until(backing.redis_ready, 30, "Redis")
        phase("deadline", backing, args, {"ROUTING_BREAKER_THRESHOLD": "1000000"}, rounds=args.rounds,
              seconds=None, turns=args.turns)
        if args.breaker_seconds > 0:
            phase("breaker", backing, args, {}, rounds=None, seconds=args.breaker_seconds, turns=0)
    finally:
        backing.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
