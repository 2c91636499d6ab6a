"""Router metrics as routing-eval's README defines them (RouteLLM's `routellm/evals/evaluate.py` convention).

Numpy only. The scores are cut at their 10 quantile edges, as `pandas.qcut(scores, 10, retbins=True,
duplicates="drop")` cuts them (numpy's linear quantiles, duplicate edges dropped). Each edge is an operating
point: a prompt goes to the strong model when `score >= edge`, or `score > edge` at the top edge. APGR is the
trapezoid area under quality against strong-call share, normalised by the all-weak / all-strong gap; CPT(x) is
the smallest share at which PGR reaches x, by linear interpolation between the points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RouterMetrics:
    points: list[tuple[float, float, float]]  # (strong-call share, quality, PGR), by increasing share
    apgr: float
    cpt50: float
    cpt80: float
    quality_weak: float
    quality_strong: float


def quantile_edges(scores, bins: int = 10) -> np.ndarray:
    """The bin edges pandas.qcut(scores, bins, retbins=True, duplicates="drop") returns."""
    levels = np.linspace(0.0, 1.0, bins + 1)
    # pandas rounds a quantile level that is not exact in binary up to the next float (pandas >= 3).
    inexact = bins * levels != np.arange(bins + 1)
    levels[inexact] = np.nextafter(levels[inexact], 1.0)
    return np.unique(np.quantile(np.asarray(scores, dtype=float), levels))


def operating_point(scores, weak, strong, threshold: float, *, strict: bool = False) -> tuple[float, float]:
    """(strong-call share, quality) when prompts scoring >= threshold (> when strict) go to the strong model."""
    scores = np.asarray(scores, dtype=float)
    escalated = scores > threshold if strict else scores >= threshold
    quality = np.where(escalated, np.asarray(strong, dtype=float), np.asarray(weak, dtype=float)).mean()
    return float(escalated.mean()), float(quality)


def pgr(quality: float, quality_weak: float, quality_strong: float) -> float:
    return (quality - quality_weak) / (quality_strong - quality_weak)


def router_metrics(scores, weak, strong, bins: int = 10) -> RouterMetrics:
    """APGR, CPT(50%) and CPT(80%) of a router's scores against per-prompt 0/1 correctness of both models."""
    weak = np.asarray(weak, dtype=float)
    strong = np.asarray(strong, dtype=float)
    quality_weak, quality_strong = float(weak.mean()), float(strong.mean())
    edges = quantile_edges(scores, bins)
    raw = [operating_point(scores, weak, strong, edge, strict=i == len(edges) - 1) for i, edge in enumerate(edges)]
    raw.sort()
    share = np.array([c for c, _ in raw])
    quality = np.array([r for _, r in raw])
    gains = (quality - quality_weak) / (quality_strong - quality_weak)
    span = share[-1] - share[0]
    auc = float(np.sum((quality[1:] + quality[:-1]) * np.diff(share)) / 2.0)
    apgr = (auc - quality_weak * span) / ((quality_strong - quality_weak) * span)
    return RouterMetrics(
        points=[(float(c), float(r), float(g)) for c, r, g in zip(share, quality, gains, strict=True)],
        apgr=float(apgr),
        cpt50=_cpt(share, gains, 0.5),
        cpt80=_cpt(share, gains, 0.8),
        quality_weak=quality_weak,
        quality_strong=quality_strong,
    )


def _cpt(share: np.ndarray, gains: np.ndarray, target: float) -> float:
    for i in range(len(share)):
        if gains[i] >= target:
            if i == 0:
                return float(share[0])
            return float(share[i - 1] + (target - gains[i - 1]) * (share[i] - share[i - 1]) / (gains[i] - gains[i - 1]))
    return 1.0
