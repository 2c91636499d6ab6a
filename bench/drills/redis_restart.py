"""Drill: Redis restarts while chat turns and /v1 calls (streaming and not) are being answered.

    .venv/bin/python bench/drills/redis_restart.py --embedded      # a throwaway redis-server and Postgres
    .venv/bin/python bench/drills/redis_restart.py                 # the machine's Redis: `service redis-server
                                                                    # stop` / `start` (everyone on it feels it)

Runs the stack of bench/drills/stack.py (the fake provider, the web app under granian as docs/operations.md
serves it, a Celery worker and beat), drives chat turns and /v1 calls for `--before` seconds, restarts Redis
(stop, `--down` seconds, start: the restart loses every key — token streams, heartbeats, budget counters,
breaker states, the broker's queue), measures how soon a page, a /v1 call and a chat turn succeed again, keeps
the load on for `--after` seconds, waits for every turn to finish, and prints:

    answers served, usage rows, turns done, answers without exactly one usage row, double charges,
    turns unfinished, seconds until service is back after Redis returns

What should hold (docs/operations.md, "Redis restarts"): turns in flight finish `done` (their publisher and
heartbeat retry until Redis is back; the sweeper does not judge heartbeats for a heartbeat TTL after a restart),
queued turns whose task the restart lost are sent again at the next sweep, every answer has exactly one usage
row (the ledger is in Postgres; the budget counters are re-seeded from it), and nothing needs restarting.
"""

from __future__ import annotations

import shutil
import time

from common import (
    ROOT,
    Backing,
    Load,
    Stack,
    _pg,
    arg_parser,
    log,
    make_fixture,
    print_figures,
    tally,
    wait_back,
    wait_turns_finished,
)


def main() -> int:
    parser = arg_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=float, default=8.0, help="seconds of load before the restart")
    parser.add_argument("--down", type=float, default=2.0, help="seconds Redis stays down")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of load after Redis is back")
    parser.add_argument("--api-clients", type=int, default=6)
    parser.add_argument("--chat-clients", type=int, default=6)
    parser.set_defaults(tokens=60, delay_ms=40, database="kc_drill_redis", redis_db=14)
    args = parser.parse_args()

    backing = Backing(embedded=args.embedded, var_dir=args.var_dir, database=args.database, redis_db=args.redis_db)
    stack = Stack(backing, web_workers=args.web_workers)
    load = None
    try:
        log(f"backing: {'embedded' if args.embedded else 'the machine'}'s Postgres and Redis "
            f"({backing.database_url}, {backing.redis_url})")
        backing.reset()
        # The outbox's spool of an earlier run names a database that was just dropped and created again.
        shutil.rmtree(ROOT / "var" / "outbox" / args.database, ignore_errors=True)
        stack.start_all(tokens=args.tokens, delay_ms=args.delay_ms)
        fixture = make_fixture(stack)
        log(f"stack up at {stack.web.url}; answers of {args.tokens} tokens at {args.delay_ms} ms apart "
            f"(~{args.tokens * args.delay_ms / 1000:.1f} s each)")

        load = Load(stack.web.url, fixture, api_clients=args.api_clients, chat_clients=args.chat_clients).start()
        time.sleep(args.before)
        streaming = _pg("SELECT count(*) FROM conversations_message WHERE tenant_id = %s AND status = 'streaming'",
                        [fixture.tenant_id])[0][0]
        log(f"restarting Redis with {streaming} chat turns streaming and /v1 calls in flight")
        down_at = time.monotonic()
        backing.stop_redis()
        time.sleep(args.down)
        backing.start_redis()
        back_at = time.monotonic()
        log(f"Redis is back after {back_at - down_at:.1f} s")
        back = wait_back(stack.web.url, fixture, since=back_at)
        log(f"service back: {back}")
        time.sleep(args.after)
        load.stop()
        log("load stopped; waiting for every turn to finish")
        left = wait_turns_finished(fixture)
        figures = tally(fixture, load.outcomes)
        figures = {
            "chat turns streaming at the restart": streaming,
            **figures,
            "seconds until service is back after Redis returns (page, /v1, chat turn)": (
                ", ".join("never" if v is None else f"{v:.2f}" for v in back.values())),
            "turns still unfinished when the wait ended": left,
        }
        print_figures("Redis restart mid-stream", figures)
        path = stack.save_logs("drill_redis_restart")
        log(f"process logs: {path}")
        return 0
    finally:
        if load is not None:
            load.stop()
        stack.stop()
        backing.close()


if __name__ == "__main__":
    raise SystemExit(main())
