"""Drill: --clients clients open streaming /v1 calls at once and hang up mid-stream; print the usage rows written
(exactly one per call that reached the provider, none twice) and the answers left without a row.

    .venv/bin/python bench/drills/disconnects.py              # the machine's Postgres and Redis
    .venv/bin/python bench/drills/disconnects.py --embedded   # throwaway servers (development)

The stack (bench/drills/stack.py): the fake provider (--tokens deltas, --delay-ms apart) and the web app served
as docs/operations.md says (granian), on a database of the drill's own; nothing is restarted. Each client sends
`POST /v1/chat/completions` with `stream: true`, reads the response headers (its request id), reads a random
number of deltas (1 to half the answer), then closes its connection without reading the rest. Half the clients
use the OpenAI protocol, half Anthropic's (`/v1/messages`). --early further clients hang up before
their answer starts (the fake waits --ttft-ms before it; they leave at a random moment in its second half,
when their call is at the provider), so calls billed unseen by their client are counted too.

Figures: clients, calls the fake provider received, request ids the clients saw, usage rows, rows per call
(each request id must have exactly one, `api:<request id>`), rows for calls whose client saw no request id,
double charges, and output tokens billed against deltas the clients received (billing fewer tokens than a client
received would be under-billing). Rows are written when the routing core ends the stopped call, a moment after
the client left: the drill waits for them with a deadline.
"""

from __future__ import annotations

import asyncio
import random
import time

import httpx
import orjson
from common import Backing, Stack, _pg, arg_parser, log, make_fixture, print_figures

PROMPT = [{"role": "user", "content": "drill: tell me a long story"}]


async def early_client(client: httpx.AsyncClient, api_key: str, *, anthropic: bool, leave_after: float,
                       start: asyncio.Event) -> dict:
    """One streaming call whose client hangs up `leave_after` seconds in, before the answer has started."""
    try:
        return await asyncio.wait_for(one_client(client, api_key, anthropic=anthropic, read_deltas=1, start=start),
                                      timeout=leave_after + 0.2)  # + the wait on the start line
    except TimeoutError:
        return {"rid": "", "status": "left before the answer", "seen": 0, "finished": False}


async def one_client(client: httpx.AsyncClient, api_key: str, *, anthropic: bool, read_deltas: int,
                     start: asyncio.Event) -> dict:
    """One streaming call, hung up after `read_deltas` deltas (or at the answer's end if it is shorter)."""
    if anthropic:
        path, body = "/v1/messages", {"model": "auto", "stream": True, "max_tokens": 1024, "messages": PROMPT}
        headers = {"x-api-key": api_key, "anthropic-version": "2023-06-01"}
    else:
        path, body = "/v1/chat/completions", {"model": "auto", "stream": True, "messages": PROMPT}
        headers = {"Authorization": f"Bearer {api_key}"}
    await start.wait()
    seen, rid, status, finished = 0, "", None, False
    try:
        async with client.stream("POST", path, json=body, headers=headers) as response:
            status, rid = response.status_code, response.headers.get("x-request-id", "")
            if status != 200:
                await response.aread()
                return {"rid": rid, "status": status, "seen": 0, "finished": True}
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    finished = finished or line == "data: [DONE]"
                    continue
                event = orjson.loads(line[6:])
                if _delta_text(event, anthropic):
                    seen += 1
                    if seen >= read_deltas:
                        break  # leaving the block closes the connection with the answer unread
                if event.get("type") == "message_stop":
                    finished = True
    except httpx.HTTPError as exc:
        return {"rid": rid, "status": type(exc).__name__, "seen": seen, "finished": False}
    return {"rid": rid, "status": status, "seen": seen, "finished": finished}


def _delta_text(event: dict, anthropic: bool) -> str:
    if anthropic:
        delta = event.get("delta") or {}
        return delta.get("text", "") if event.get("type") == "content_block_delta" else ""
    choices = event.get("choices") or []
    return (choices[0].get("delta") or {}).get("content") or "" if choices else ""


async def run_clients(web_url: str, api_key: str, *, clients: int, early: int, tokens: int, ttft: float,
                      seed: int) -> list[dict]:
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=clients + early + 10, max_keepalive_connections=0)
    start = asyncio.Event()
    async with httpx.AsyncClient(base_url=web_url, timeout=60, limits=limits) as client:
        tasks = [asyncio.create_task(one_client(client, api_key, anthropic=i % 2 == 1,
                                                read_deltas=rng.randint(1, max(1, tokens // 2)), start=start))
                 for i in range(clients)]
        tasks += [asyncio.create_task(early_client(client, api_key, anthropic=i % 2 == 1,
                                                   leave_after=rng.uniform(ttft / 2, ttft * 0.9), start=start))
                  for i in range(early)]
        await asyncio.sleep(0.2)  # every task waiting on the start line
        start.set()
        return await asyncio.gather(*tasks)


def provider_calls(fake_url: str) -> int:
    with httpx.Client(base_url=fake_url) as client:
        return len(client.get("/_control/requests").json()["requests"])


def ledger(tenant_id: int) -> list[tuple[str, int, bool]]:
    return _pg("SELECT key, output_tokens, output_estimated FROM billing_usagerecord WHERE tenant_id = %s",
               [tenant_id])


def main() -> int:
    parser = arg_parser(__doc__.split("\n\n")[0])
    parser.set_defaults(database="kc_drill_disconnects", tokens=200, delay_ms=20)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--early", type=int, default=50, help="further clients that leave before the answer")
    parser.add_argument("--ttft-ms", type=int, default=2000, help="the fake provider's wait before an answer")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the rows")
    args = parser.parse_args()

    backing = Backing(embedded=args.embedded, var_dir=args.var_dir, database=args.database, redis_db=args.redis_db)
    stack = Stack(backing, web_workers=args.web_workers)
    try:
        backing.reset()
        stack.migrate()
        stack.start_fake(tokens=args.tokens, delay_ms=args.delay_ms)
        stack.scenario(tokens=args.tokens, delay_ms=args.delay_ms, ttft_ms=args.ttft_ms)
        fixture = make_fixture(stack, conversations=1)
        stack.start_web()
        log(f"web {stack.web.url}; {args.clients} clients leaving mid-stream and {args.early} before the answer; "
            f"answers of {args.tokens} deltas {args.delay_ms} ms apart after {args.ttft_ms} ms")
        t0 = time.monotonic()
        results = asyncio.run(run_clients(stack.web.url, fixture.api_key, clients=args.clients, early=args.early,
                                          tokens=args.tokens, ttft=args.ttft_ms / 1000, seed=args.seed))
        log(f"every client has hung up ({time.monotonic() - t0:.1f} s)")

        # The rows land as the stopped calls end; wait until there is one per call the provider received.
        reached = provider_calls(stack.fake.url)
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline and len(ledger(fixture.tenant_id)) < reached:
            time.sleep(0.2)
        time.sleep(2.0)  # a second row for a call would show up now
        reached = provider_calls(stack.fake.url)
        rows = ledger(fixture.tenant_id)

        by_key: dict[str, list[tuple[int, bool]]] = {}
        for key, output, estimated in rows:
            by_key.setdefault(key, []).append((output, estimated))
        answered = [r for r in results if r["status"] == 200]
        rids = {f"api:{r['rid']}": r for r in answered if r["rid"]}
        without_row = [k for k in rids if k not in by_key]
        double = [k for k, v in by_key.items() if len(v) > 1]
        under = [k for k, r in rids.items() if k in by_key and by_key[k][0][0] < r["seen"]]
        figures = {
            "clients (mid-stream / before the answer)": f"{args.clients} / {args.early}",
            "calls the provider received": reached,
            "calls answered 200 (request id seen)": len(answered),
            "clients that hung up mid-stream": sum(1 for r in answered if not r["finished"]),
            "clients that got the whole answer first": sum(1 for r in answered if r["finished"]),
            "clients that left before the answer": sum(1 for r in results if r["status"] == "left before the answer"),
            "other outcomes": _count(r["status"] for r in results
                                     if r["status"] not in (200, "left before the answer")),
            "usage rows written": len(rows),
            "usage rows = calls the provider received": len(rows) == reached,
            "answers without a usage row": len(without_row),
            "double charges (two rows for one call)": len(double),
            "rows for calls whose client saw no request id (left before the answer)": sum(
                1 for k in by_key if k not in rids),
            "rows with estimated output (cut short before the provider's count)": sum(
                1 for v in by_key.values() if v[0][1]),
            "deltas the clients received": sum(r["seen"] for r in answered),
            "output tokens billed": sum(v[0][0] for v in by_key.values()),
            "calls billed fewer tokens than their client received": len(under),
        }
        print_figures(f"{args.clients} clients disconnecting mid-stream", figures)
        stack.save_logs("drill-disconnects")
    finally:
        stack.stop()
        backing.close()
    return 0


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[str(item)] = out.get(str(item), 0) + 1
    return out


if __name__ == "__main__":
    raise SystemExit(main())
