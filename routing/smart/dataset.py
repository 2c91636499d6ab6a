"""Reading the routing-eval data (MMLU, per-prompt correctness of the weak and the strong model).

The file is `settings.ROUTING_EVAL_DATA` unless a path is given; see /work/shared/data/routing-eval/README.md
(or the folder holding the file) for its schema and fixed train/validation split.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

# The published file this router was trained on (routing-eval README).
EXPECTED_SHA256 = "804e0fc57e2e4c18ecf848b279c2b7460e7b263edcc44d2ac93bd2a7a301a8bf"


class DatasetMissing(FileNotFoundError):
    pass


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    subject: str
    split: str
    prompt: str
    weak_correct: int
    strong_correct: int

    @property
    def label(self) -> int:
        """1 when only the strong model is right: the turns the router should escalate."""
        return int(self.strong_correct == 1 and self.weak_correct == 0)


def data_path(path: str | Path | None = None) -> Path:
    if path is None:
        from django.conf import settings

        path = settings.ROUTING_EVAL_DATA
    path = Path(path)
    if not path.is_file():
        raise DatasetMissing(f"routing-eval data not found at {path} (set ROUTING_EVAL_DATA or pass --data)")
    return path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_rows(path: str | Path | None = None, *, split: str | None = None) -> list[Row]:
    """All rows of the file, or those of one split ("train" or "validation"), in file order."""
    path = data_path(path)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [Row(**{k: d[k] for k in Row.__dataclass_fields__}) for d in map(json.loads, f)]
    return [r for r in rows if split is None or r.split == split]
