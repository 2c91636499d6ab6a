"""Drill: restart Postgres while chat turns and /v1 calls are under way; print what was served and billed.

    .venv/bin/python bench/drills/postgres_restart.py              # the machine's Postgres (pg_ctlcluster)
    .venv/bin/python bench/drills/postgres_restart.py --embedded   # throwaway servers (development)

Load (bench/drills/load.py): /v1 calls (JSON and streamed) from --api-clients threads back to back, and chat
turns from --chat-clients threads, one a second each, through the web app (granian) and a Celery worker. After
--warmup seconds Postgres is stopped (fast shutdown: every connection is cut), kept down --down seconds, and
started again. From the moment it accepts connections, the drill measures how long until a page, a /v1 call
and a new chat turn succeed again (no process is restarted), keeps the load on for --after seconds, waits for
every turn to end, and prints the figures: answers served, usage rows, answers without exactly one usage row,
double charges, turns done and unfinished, seconds until service was back.
"""

import threading
import time

from common import (
    Backing,
    Load,
    Stack,
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
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds of load before the restart")
    parser.add_argument("--down", type=float, default=3.0, help="seconds Postgres stays down")
    parser.add_argument("--after", type=float, default=15.0, help="seconds of load after Postgres is back")
    parser.add_argument("--api-clients", type=int, default=4)
    parser.add_argument("--chat-clients", type=int, default=4)
    args = parser.parse_args()

    backing = Backing(embedded=args.embedded, var_dir=args.var_dir, database=args.database, redis_db=args.redis_db)
    stack = Stack(backing, web_workers=args.web_workers)
    try:
        backing.reset()
        stack.start_all(tokens=args.tokens, delay_ms=args.delay_ms)
        fixture = make_fixture(stack)
        log(f"stack up: web {stack.web.url}, fake provider {stack.fake.url}, database {backing.database_url}")
        load = Load(stack.web.url, fixture, api_clients=args.api_clients, chat_clients=args.chat_clients).start()
        time.sleep(args.warmup)

        log("stopping Postgres")
        t_down = time.monotonic()
        backing.stop_postgres()
        time.sleep(args.down)
        log("starting Postgres")
        backing.start_postgres()
        t_up = time.monotonic()
        log(f"Postgres accepts connections again ({t_up - t_down:.1f} s after the stop began)")

        back: dict = {}
        prober = threading.Thread(target=lambda: back.update(wait_back(stack.web.url, fixture, since=t_up)))
        prober.start()
        time.sleep(args.after)
        load.stop()
        prober.join()
        log("load stopped; waiting for every turn to end")
        left = wait_turns_finished(fixture)
        figures = tally(fixture, load.outcomes)
        during = [o for o in load.outcomes if t_down <= o.at]
        first_ok = {kind: next((o.at - t_up for o in during if o.kind == kind and o.outcome == "ok"
                                and o.at >= t_up), None) for kind in ("api", "api-stream", "chat")}
        figures.update({
            "turns still unfinished after the wait": left,
            "seconds until service is back after Postgres returns (page, /v1, chat turn)":
                {k: (round(v, 2) if v is not None else None) for k, v in back.items()},
            "seconds until the load's first success after Postgres returns":
                {k: (round(v, 2) if v is not None else None) for k, v in first_ok.items()},
            "Postgres down (s, stop to accepting again)": round(t_up - t_down, 2),
        })
        print_figures("Postgres restart during load", figures)
        log(f"process logs: {stack.save_logs('drill_postgres_restart')}")
    finally:
        stack.stop()
        backing.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
