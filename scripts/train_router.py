"""Train the smart Auto router on routing-eval and write its artifact to routing/smart/model/.

Retrain (needs the `train` extra: `.venv/bin/pip install -e '.[dev,train]'`):

    .venv/bin/python -m scripts.train_router [--data PATH] [--version smart-YYYY.MM.N]

then run `manage.py routing_eval`, the smart tests and `bench/smart_score.py`, and commit routing/smart/model/.
The data file defaults to the ROUTING_EVAL_DATA environment variable, else the same default as the setting of
that name (../shared/data/routing-eval/mmlu.jsonl.gz beside the repository); the script does not load Django
settings, which want a secret key outside debug. Training is seeded and single-threaded, so the same data
gives the same files.

What it does: the label is "only the strong model is right" (strong_correct 1, weak_correct 0). Two models
learn it from the train split only: LightGBM on routing.smart.features' general features (averaged over a few
seeds, which steadies it) and a logistic regression on TF-IDF word 1-2 grams. The validation split chooses the
blend weight (at least half on the general-feature model, which should carry better to other kinds of task)
and sets the dial's thresholds. The scorer that serves is then rebuilt from the exported files and must
reproduce sklearn's and LightGBM's probabilities on the validation split, or training fails.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightgbm  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from wordfreq import top_n_list, zipf_frequency  # noqa: E402

from routing.smart import dataset  # noqa: E402
from routing.smart.features import GENERAL_FEATURE_NAMES, general_features  # noqa: E402
from routing.smart.metrics import operating_point, pgr, router_metrics  # noqa: E402
from routing.smart.scorer import MANIFEST, MODEL_DIR, ROUTER_LEVELS, Router  # noqa: E402

VERSION = "smart-2026.12.1"
ZIPF_WORDS = 50_000
LGB_SEEDS = (1, 2, 3, 4, 5)
LGB_ROUNDS = 300
LGB_PARAMS = {
    "objective": "binary",
    "num_leaves": 15,
    "learning_rate": 0.03,
    "min_data_in_leaf": 50,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "feature_fraction": 0.8,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}
TFIDF_PARAMS = {"ngram_range": (1, 2), "min_df": 3, "sublinear_tf": True, "max_features": 50_000}
LOGREG_PARAMS = {"C": 1.0, "max_iter": 3000}
BLEND_WEIGHTS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # weight of the LightGBM part
LEVEL_SHARE_STEP = 0.05  # level k escalates 5k% of the validation prompts
_TABLE_WORD = re.compile(r"[a-z][a-z']+")
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "routing-eval" / "mmlu.jsonl.gz"


def zipf_table() -> dict[str, float]:
    """wordfreq's most frequent English words with their zipf value, for the word-rarity features."""
    return {w: round(zipf_frequency(w, "en"), 2) for w in top_n_list("en", ZIPF_WORDS) if _TABLE_WORD.fullmatch(w)}


def level_table(scores, weak, strong) -> list[dict]:
    """Per dial level: the score threshold that escalated its target share of the validation prompts."""
    scores = np.asarray(scores, dtype=float)
    ranked = np.sort(scores)[::-1]
    quality_weak, quality_strong = float(np.mean(weak)), float(np.mean(strong))
    levels = []
    for level in ROUTER_LEVELS:
        target = round(LEVEL_SHARE_STEP * level, 2)
        threshold = float(ranked[max(round(target * len(scores)), 1) - 1])
        share, quality = operating_point(scores, weak, strong, threshold)
        levels.append({"level": level, "target_share": target, "threshold": threshold, "share": share,
                       "quality": quality, "pgr": pgr(quality, quality_weak, quality_strong)})
    return levels


def metrics_dict(scores, weak, strong) -> dict:
    m = router_metrics(scores, weak, strong)
    return {"apgr": m.apgr, "cpt50": m.cpt50, "cpt80": m.cpt80, "quality_weak": m.quality_weak,
            "quality_strong": m.quality_strong, "points": m.points}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("ROUTING_EVAL_DATA", str(DEFAULT_DATA)),
                        help="mmlu.jsonl.gz (default: $ROUTING_EVAL_DATA or %(default)s)")
    parser.add_argument("--version", default=VERSION)
    parser.add_argument("--out", default=str(MODEL_DIR))
    args = parser.parse_args(argv)

    path = dataset.data_path(args.data)
    sha256 = dataset.file_sha256(path)
    if sha256 != dataset.EXPECTED_SHA256:
        print(f"warning: {path} is not the published routing-eval file (sha256 {sha256})", file=sys.stderr)
    rows = dataset.load_rows(path)
    train = [r for r in rows if r.split == "train"]
    val = [r for r in rows if r.split == "validation"]
    y_train = np.array([r.label for r in train])
    weak = np.array([r.weak_correct for r in val])
    strong = np.array([r.strong_correct for r in val])
    print(f"data: {path} sha256 {sha256}; train {len(train)}, validation {len(val)}")

    zipf = zipf_table()
    x_train = np.array([general_features(r.prompt, zipf) for r in train])
    x_val = np.array([general_features(r.prompt, zipf) for r in val])
    boosters = [
        lightgbm.train({**LGB_PARAMS, "seed": seed}, lightgbm.Dataset(x_train, y_train,
                                                                       feature_name=GENERAL_FEATURE_NAMES),
                       num_boost_round=LGB_ROUNDS)
        for seed in LGB_SEEDS
    ]
    p_lgb = np.mean([b.predict(x_val, num_threads=1) for b in boosters], axis=0)

    vectorizer = TfidfVectorizer(**TFIDF_PARAMS)
    t_train = vectorizer.fit_transform([r.prompt for r in train])
    logreg = LogisticRegression(**LOGREG_PARAMS).fit(t_train, y_train)
    p_tfidf = logreg.predict_proba(vectorizer.transform([r.prompt for r in val]))[:, 1]

    print(f"LightGBM, general features: {_fmt(metrics_dict(p_lgb, weak, strong))}")
    print(f"TF-IDF + logistic:          {_fmt(metrics_dict(p_tfidf, weak, strong))}")
    blends = {w: metrics_dict(w * p_lgb + (1 - w) * p_tfidf, weak, strong) for w in BLEND_WEIGHTS}
    for w, m in blends.items():
        print(f"blend {w:.1f} LightGBM:        {_fmt(m)}")
    weight = max(BLEND_WEIGHTS, key=lambda w: (blends[w]["apgr"], -blends[w]["cpt50"]))

    terms = vectorizer.get_feature_names_out()
    manifest = {
        "version": args.version,
        "label": "strong_correct == 1 and weak_correct == 0",
        "data": {"file": path.name, "sha256": sha256, "size": path.stat().st_size,
                 "train_rows": len(train), "validation_rows": len(val)},
        "params": {"lgb": LGB_PARAMS, "lgb_rounds": LGB_ROUNDS, "lgb_seeds": list(LGB_SEEDS),
                   "tfidf": {**TFIDF_PARAMS, "ngram_range": list(TFIDF_PARAMS["ngram_range"])},
                   "logreg": LOGREG_PARAMS, "zipf_words": ZIPF_WORDS, "blend_weights_tried": list(BLEND_WEIGHTS)},
        "blend": {"weight_lgb": weight},
        "features": GENERAL_FEATURE_NAMES,
        "lgb": {"files": [f"lgb-{seed}.txt" for seed in LGB_SEEDS]},
        "tfidf": {"ngram_max": TFIDF_PARAMS["ngram_range"][1], "terms": terms.tolist(),
                  "idf": vectorizer.idf_.tolist(), "coef": logreg.coef_[0].tolist(),
                  "intercept": float(logreg.intercept_[0])},
        "zipf": zipf,
    }
    booster_texts = [b.model_to_string() for b in boosters]

    # The serving code, rebuilt from what is about to be written, must give the training probabilities.
    served = Router(manifest=manifest, boosters=booster_texts)
    served_tfidf = np.array([served.tfidf_proba(r.prompt) for r in val])
    served_lgb = np.array([served.lgb_proba(r.prompt) for r in val])
    assert np.max(np.abs(served_tfidf - p_tfidf)) < 1e-9, "runtime TF-IDF differs from sklearn"
    assert np.max(np.abs(served_lgb - p_lgb)) < 1e-9, "runtime LightGBM differs from training"
    scores = np.array([served.score_text(r.prompt) for r in val])
    assert np.max(np.abs(scores - (weight * p_lgb + (1 - weight) * p_tfidf))) < 1e-9

    manifest["metrics"] = {"split": "validation", **metrics_dict(scores, weak, strong)}
    manifest["levels"] = level_table(scores, weak, strong)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("lgb-*.txt"):
        old.unlink()
    for name, text in zip(manifest["lgb"]["files"], booster_texts, strict=True):
        (out / name).write_text(text, encoding="utf-8")
    # mtime=0: the same model gives the same bytes.
    (out / MANIFEST).write_bytes(gzip.compress(json.dumps(manifest).encode("utf-8"), compresslevel=9, mtime=0))

    print(f"\nchosen: {weight:.1f} LightGBM + {1 - weight:.1f} TF-IDF -> {_fmt(manifest['metrics'])}")
    print("level  target  threshold  share   quality  PGR")
    for lv in manifest["levels"]:
        print(f"{lv['level']:>5}  {lv['target_share']:>6.0%}  {lv['threshold']:.5f}    {lv['share']:6.1%}  "
              f"{lv['quality']:.4f}   {lv['pgr']:.3f}")
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"wrote {out} ({size / 1e6:.2f} MB), version {args.version}")
    return 0


def _fmt(m: dict) -> str:
    return f"APGR {m['apgr']:.4f}  CPT(50%) {m['cpt50']:.1%}  CPT(80%) {m['cpt80']:.1%}"


if __name__ == "__main__":
    sys.exit(main())
