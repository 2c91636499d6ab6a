"""Latency of the smart router's scorer: one request at a time, one CPU thread.

    .venv/bin/python bench/smart_score.py [--data PATH]

Scores every validation prompt of routing-eval, then long synthetic multi-message requests (near the 6,000
character window), and prints the load time and the median, p95, p99 and max per score in ms. Goals: median
<= 25 ms, p95 <= 100 ms. Needs no database or Redis.
"""

import os

# Before numpy and LightGBM load: one thread for every math library.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from routing.smart import dataset  # noqa: E402
from routing.smart.scorer import Router  # noqa: E402
from routing.types import ChatMessage, ChatRequest  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "routing-eval" / "mmlu.jsonl.gz"


def synthetic_requests(prompts: list[str], n: int, rng: random.Random) -> list[ChatRequest]:
    """Conversations of 4-8 turns of pasted-together prompts, each user message 1-3 kB."""
    requests = []
    for _ in range(n):
        messages = []
        for turn in range(rng.randint(4, 8)):
            text = " ".join(rng.choice(prompts) for _ in range(rng.randint(3, 8)))[:3000]
            messages.append(ChatMessage(role="user" if turn % 2 == 0 else "assistant", content=text))
        messages.append(ChatMessage(role="user", content=rng.choice(prompts)))
        requests.append(ChatRequest(messages=messages))
    return requests


def summary(name: str, ms: list[float]) -> None:
    a = np.asarray(ms)
    print(f"{name:<34} n={len(a):>5}  median {np.median(a):6.2f}  p95 {np.percentile(a, 95):6.2f}  "
          f"p99 {np.percentile(a, 99):6.2f}  max {a.max():6.2f}  (ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("ROUTING_EVAL_DATA", str(DEFAULT_DATA)))
    parser.add_argument("--synthetic", type=int, default=300)
    args = parser.parse_args()

    started = time.perf_counter()
    scorer = Router()
    print(f"load {scorer.version}: {(time.perf_counter() - started) * 1000:.0f} ms")
    prompts = [r.prompt for r in dataset.load_rows(args.data, split="validation")]

    scorer.score_text(prompts[0])  # first-call warm-up (LightGBM's predictor)
    timings = []
    for prompt in prompts:
        t = time.perf_counter()
        scorer.score_text(prompt)
        timings.append((time.perf_counter() - t) * 1000)
    summary("validation prompts (score_text)", timings)

    requests = synthetic_requests(prompts, args.synthetic, random.Random(20261201))
    timings = []
    for request in requests:
        t = time.perf_counter()
        scorer.score_request(request)
        timings.append((time.perf_counter() - t) * 1000)
    summary("multi-message requests (~6 kB)", timings)


if __name__ == "__main__":
    main()
