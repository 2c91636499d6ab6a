"""Score prompts with the smart router, file to file (the interface outside evaluations call; keep it exact).

    manage.py routing_score --input IN.jsonl --output OUT.jsonl

Each IN line is `{"id": ..., "prompt": "..."}` (the id any JSON value, kept as it is); OUT gets
`{"id": ..., "score": <float>}` per input line, in the same order. A higher score means more need of the
strong model. Blank lines are skipped. Bad input (invalid JSON, a line that is not an object, a missing id, a
missing or non-string prompt, no prompt at all) fails with the line number, and no output file is left: the
output is written beside its destination under a temporary name and renamed into place at the end.

The whole input is checked before anything is scored. No database or Redis is touched.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from routing.smart import router


class Command(BaseCommand):
    help = "Score each prompt of a JSONL file with the smart router (how much it needs the strong model)."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--input", required=True, help='JSONL, one {"id": ..., "prompt": "..."} per line')
        parser.add_argument("--output", required=True, help='JSONL written: one {"id": ..., "score": x} per line')

    def handle(self, *args, input, output, **options):
        items = _read_items(Path(input))
        scorer = router()
        destination = Path(output)
        fd, tmp = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for item_id, prompt in items:
                    f.write(json.dumps({"id": item_id, "score": scorer.score_text(prompt)}) + "\n")
            os.replace(tmp, destination)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.stderr.write(f"scored {len(items)} prompts with {scorer.version} -> {destination}")


def _read_items(path: Path) -> list[tuple[object, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CommandError(f"input file not found: {path}") from exc
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not UTF-8 text ({exc})") from exc
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{path} line {number}: invalid JSON ({exc.msg})") from exc
        if not isinstance(item, dict):
            raise CommandError(f"{path} line {number}: expected a JSON object with id and prompt")
        if "id" not in item:
            raise CommandError(f"{path} line {number}: missing id")
        if not isinstance(item.get("prompt"), str):
            raise CommandError(f"{path} line {number}: missing prompt, or prompt is not a string")
        items.append((item["id"], item["prompt"]))
    if not items:
        raise CommandError(f"{path}: no prompts (the file is empty)")
    return items
