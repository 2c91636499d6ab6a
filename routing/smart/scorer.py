"""The smart Auto router's scorer: how much a turn needs the strong model, as a probability in [0, 1].

The score is a blend of two models trained on routing-eval (scripts/train_router.py), both evaluated here with
numpy and LightGBM only, from files in `model/` (nothing is downloaded):

- LightGBM on the general text features of routing.smart.features (an average of a few seeds' boosters);
- a logistic regression on TF-IDF word 1-2 grams, replayed from the exported vocabulary, idf and coefficients
  exactly as sklearn computes it (training asserts that the two agree).

A Router is immutable once loaded and safe to share between threads.
"""

from __future__ import annotations

import gzip
import json
import math
import threading
from pathlib import Path

import lightgbm
import numpy as np

from .features import general_features, request_text, tfidf_terms

MODEL_DIR = Path(__file__).resolve().parent / "model"
MANIFEST = "router.json.gz"
ROUTER_LEVELS = range(1, 11)


class Router:
    def __init__(self, model_dir: str | Path = MODEL_DIR, *, manifest: dict | None = None,
                 boosters: list[str] | None = None):
        """Load from `model_dir`, or from an in-memory manifest and booster texts (what training checks)."""
        model_dir = Path(model_dir)
        if manifest is None:
            with gzip.open(model_dir / MANIFEST, "rt", encoding="utf-8") as f:
                manifest = json.load(f)
        if boosters is None:
            boosters = [(model_dir / name).read_text(encoding="utf-8") for name in manifest["lgb"]["files"]]
        self.version: str = manifest["version"]
        self.metrics: dict = manifest.get("metrics", {})
        self.levels: list[dict] = manifest.get("levels", [])
        self.manifest = manifest
        self._zipf: dict[str, float] = manifest["zipf"]
        self._weight_lgb: float = manifest["blend"]["weight_lgb"]
        self._boosters = [lightgbm.Booster(model_str=text) for text in boosters]
        tfidf = manifest["tfidf"]
        self._ngram_max: int = tfidf["ngram_max"]
        self._intercept: float = tfidf["intercept"]
        self._terms: dict[str, tuple[float, float]] = {
            term: (idf, coef) for term, idf, coef in zip(tfidf["terms"], tfidf["idf"], tfidf["coef"], strict=True)
        }

    def score_text(self, text: str) -> float:
        return self._weight_lgb * self.lgb_proba(text) + (1.0 - self._weight_lgb) * self.tfidf_proba(text)

    def score_request(self, request) -> float:
        """The score of a routing.types.ChatRequest: its last user messages (see features.request_text)."""
        return self.score_text(request_text(request.messages))

    def threshold(self, level: int) -> float:
        return self._level(level)["threshold"]

    def expected_share(self, level: int) -> float:
        return self._level(level)["target_share"]

    def lgb_proba(self, text: str) -> float:
        row = np.asarray([general_features(text, self._zipf)], dtype=np.float64)
        return float(sum(b.predict(row, num_threads=1)[0] for b in self._boosters) / len(self._boosters))

    def tfidf_proba(self, text: str) -> float:
        """sklearn's TfidfVectorizer(sublinear_tf, norm="l2") then LogisticRegression.predict_proba."""
        dot = 0.0
        norm2 = 0.0
        for term, count in tfidf_terms(text, self._ngram_max).items():
            entry = self._terms.get(term)
            if entry is not None:
                value = (1.0 + math.log(count)) * entry[0]
                norm2 += value * value
                dot += value * entry[1]
        z = self._intercept + (dot / math.sqrt(norm2) if norm2 > 0.0 else 0.0)
        return 1.0 / (1.0 + math.exp(-z))

    def _level(self, level: int) -> dict:
        if level not in ROUTER_LEVELS:
            raise ValueError(f"router level must be in 1..10, not {level!r}")
        return self.levels[level - 1]


_lock = threading.Lock()
_router: Router | None = None


def router() -> Router:
    """The process's Router, loaded on first use."""
    global _router
    if _router is None:
        with _lock:
            if _router is None:
                _router = Router()
    return _router
