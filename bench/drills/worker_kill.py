"""Drill: SIGKILL the Celery worker with 50 chat turns in flight, start a new one; print what was served and billed.

    .venv/bin/python bench/drills/worker_kill.py [--embedded] [--turns 50]

Restarts nothing shared: only the drill's own worker dies (its whole process group, SIGKILL: no shutdown, no
acknowledgement, no final write). The turns are posted through the web app as the browser posts them, with
answers of --tokens tokens at --delay-ms each (10 s by default), and the worker is killed once all of them are
streaming. A new worker is started at once; beat's sweeper (every 2 s here, heartbeats dead after 5 s) ends or
requeues the dead worker's turns and the broker redelivers its unacknowledged tasks. Printed: answers served
(turns done), usage rows, answers without exactly one usage row, double charges, turns by state and unfinished,
and the seconds from the kill until every turn had ended.
"""

import threading
import time

import httpx
from common import (
    Backing,
    Outcome,
    Stack,
    arg_parser,
    chat_turn,
    log,
    make_fixture,
    print_figures,
    tally,
    wait_turns_finished,
    wait_until,
)
from common import _pg as pg


def main() -> int:
    parser = arg_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=50)
    parser.set_defaults(tokens=200, delay_ms=50)
    args = parser.parse_args()

    backing = Backing(embedded=args.embedded, var_dir=args.var_dir, database=args.database, redis_db=args.redis_db)
    stack = Stack(backing, web_workers=args.web_workers)
    try:
        backing.reset()
        stack.start_all(tokens=args.tokens, delay_ms=args.delay_ms)
        fixture = make_fixture(stack, conversations=args.turns)
        log(f"stack up: web {stack.web.url}, worker pid {stack.workers[0].pid}")

        outcomes: list[Outcome] = []
        lock = threading.Lock()

        def post(conversation_id: int) -> None:
            with httpx.Client(base_url=stack.web.url) as client:
                outcome, mid = chat_turn(client, fixture, conversation_id)
            with lock:
                outcomes.append(Outcome(time.monotonic(), "chat", outcome, mid))

        posters = [threading.Thread(target=post, args=(cid,)) for cid in fixture.conversations]
        for t in posters:
            t.start()
        for t in posters:
            t.join()
        sent = sum(1 for o in outcomes if o.outcome == "ok")
        log(f"{sent} of {args.turns} turns posted")

        def streaming() -> int:
            return pg("SELECT count(*) FROM conversations_message WHERE tenant_id = %s AND role = 'assistant' "
                      "AND status = 'streaming'", [fixture.tenant_id])[0][0]

        wait_until(lambda: streaming() >= sent, 60, f"{sent} turns streaming")
        log(f"{streaming()} turns streaming: SIGKILL the worker")
        t_kill = time.monotonic()
        stack.kill_worker(stack.workers[0])
        new = stack.start_worker()
        t_ready = time.monotonic()
        log(f"new worker pid {new.pid} ready {t_ready - t_kill:.1f} s after the kill")

        left = wait_turns_finished(fixture, timeout=240)
        t_end = time.monotonic()
        figures = tally(fixture, outcomes)
        figures.update({
            "turns in flight at the kill": sent,
            "turns still unfinished after the wait": left,
            "seconds from the kill until every turn had ended": round(t_end - t_kill, 1),
            "seconds from the kill until the new worker was ready": round(t_ready - t_kill, 1),
        })
        print_figures("Worker SIGKILL with turns in flight", figures)
        log(f"process logs: {stack.save_logs('drill_worker_kill')}")
    finally:
        stack.stop()
        backing.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
