"""The smart Auto router: scores, loading, the routing_score interface, the metric convention, the artifact.

None of these touch the database (no django_db mark), which is also what routing_score promises.
"""

import json
import socket

import numpy as np
import pandas as pd
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from routing.smart import ROUTER_LEVELS, Router, router
from routing.smart.dataset import file_sha256
from routing.smart.features import request_text
from routing.smart.metrics import quantile_edges, router_metrics
from routing.types import ChatMessage, ChatRequest

GREETING = "hi there!"
HARD = (
    "A tank holds 1,200 liters. Pipe A fills it in 6 hours and pipe B in 9 hours, while a leak drains it in 12 "
    "hours. If both pipes are opened at 8:15 and the leak starts 45 minutes later, at what time is the tank "
    "full? Then compute how many liters leaked in total. Show each step of the calculation and justify it."
)


def _request(*texts: str) -> ChatRequest:
    roles = ["user", "assistant"] * len(texts)
    return ChatRequest(messages=[ChatMessage(role=r, content=t) for r, t in zip(roles, texts, strict=False)])


def test_same_request_gets_the_same_score_across_loads():
    request = _request("Explain how a hash map handles collisions.", "It chains.", "And open addressing?")
    first = router().score_request(request)
    assert router().score_request(request) == first
    assert Router().score_request(request) == first
    assert Router().score_request(request) == first


def test_scores_are_probabilities_and_a_hard_problem_outranks_a_greeting():
    scorer = router()
    scores = [scorer.score_text(t) for t in (GREETING, HARD, "", "x" * 20000, "∫ π ∑ 日本語 " * 500)]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scorer.score_text(HARD) > scorer.score_text(GREETING)


def test_model_loads_and_scores_with_the_network_blocked(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    fresh = Router()
    assert 0.0 <= fresh.score_text(HARD) <= 1.0


def test_levels_escalate_five_percent_more_per_level():
    scorer = router()
    assert [scorer.expected_share(level) for level in ROUTER_LEVELS] == pytest.approx(
        [0.05 * k for k in range(1, 11)])
    thresholds = [scorer.threshold(level) for level in ROUTER_LEVELS]
    assert thresholds == sorted(thresholds, reverse=True)
    with pytest.raises(ValueError):
        scorer.threshold(11)


def test_request_window_keeps_the_last_three_user_messages_newest_last():
    request = _request("one", "answer", "two", "answer", "three", "answer", "four")
    assert request_text(request.messages) == "two\n\nthree\n\nfour"
    long = _request("a" * 5000, "answer", "b" * 5000)
    text = request_text(long.messages)
    assert len(text) == 6000 and text.endswith("b" * 5000)


def test_routing_score_round_trip(tmp_path):
    items = [{"id": 7, "prompt": HARD}, {"id": "g", "prompt": GREETING}, {"id": [1, {"x": None}], "prompt": ""}]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(i) + "\n" for i in items) + "\n")
    call_command("routing_score", "--input", str(src), "--output", str(dst))
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [o["id"] for o in out] == [i["id"] for i in items]
    assert [o["score"] for o in out] == [router().score_text(i["prompt"]) for i in items]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": 1, "prompt": "fine"}\n{"id": 2, "prompt": \n', "line 2: invalid JSON"),
        ('{"id": 1, "prompt": "fine"}\n{"id": 2}\n', "line 2: missing prompt"),
        ('{"id": 1, "prompt": 5}\n', "line 1: missing prompt, or prompt is not a string"),
        ('{"prompt": "no id"}\n', "line 1: missing id"),
        ("", "no prompts"),
    ],
)
def test_routing_score_rejects_bad_input_and_leaves_no_output(tmp_path, content, message):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("routing_score", "--input", str(src), "--output", str(dst))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_metric_edges_are_pandas_qcut_edges():
    rng = np.random.default_rng(11)
    for scores in (rng.random(2806), rng.normal(size=999) * 50, rng.integers(0, 5, 500).astype(float)):
        _, edges = pd.qcut(scores, 10, retbins=True, duplicates="drop")
        assert np.array_equal(quantile_edges(scores), edges)


def test_a_random_router_scores_about_half():
    rng = np.random.default_rng(5)
    n = 20000
    weak = (rng.random(n) < 0.68).astype(int)
    strong = (rng.random(n) < 0.81).astype(int)
    m = router_metrics(rng.random(n), weak, strong)
    assert m.apgr == pytest.approx(0.5, abs=0.05)
    assert m.cpt50 == pytest.approx(0.5, abs=0.1)
    assert len(m.points) == 11 and m.points[0][0] == 0.0 and m.points[-1][0] == 1.0


def test_the_artifact_was_trained_on_the_data_file():
    path = settings.ROUTING_EVAL_DATA
    assert path.is_file(), f"routing-eval data missing at {path}: set ROUTING_EVAL_DATA to mmlu.jsonl.gz"
    data = router().manifest["data"]
    assert data["sha256"] == file_sha256(path)
    assert data["size"] == path.stat().st_size
    assert router().metrics["apgr"] >= 0.65 and router().metrics["cpt50"] <= 0.30
