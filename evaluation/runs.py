"""A run directory: what `solace eval generate` writes and every later stage reads.

```
RUN/
  manifest.json        config, model, data spec, subset, git SHA, row counts
  generations.jsonl    one row per supporter turn (append-only; resumable by `key`)
  metrics.json/.csv/.md, toxicity.json/.md, judge.jsonl/judge.json
```
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENERATIONS_FILE = "generations.jsonl"
MANIFEST_FILE = "manifest.json"
# The fields every generation row must carry for the metrics to be computable.
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "key": str,
    "dialogue_id": str,
    "turn_index": int,
    "messages": list,
    "reference": str,
    "generated": str,
}


class RunFileError(ValueError):
    """A run file is missing or malformed; the message names file, line and field."""


@dataclass(frozen=True, slots=True)
class RunRows:
    """Rows read from a run, plus what had to be skipped (and why)."""

    rows: list[dict[str, Any]]
    problems: list[str]


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield (line number, object or None, problem or None); a torn last line is reported."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, None, f"{path.name}:{lineno}: not JSON ({exc.msg})"
                continue
            if not isinstance(obj, dict):
                yield lineno, None, f"{path.name}:{lineno}: not a JSON object"
                continue
            yield lineno, obj, None


def validate_row(row: dict[str, Any]) -> str | None:
    """The first problem with a generation row, or None when it is usable."""
    for name, kind in REQUIRED_FIELDS.items():
        if name not in row:
            return f"missing field {name!r}"
        if not isinstance(row[name], kind):
            return f"field {name!r} should be {getattr(kind, '__name__', kind)}"
    if row.get("error"):
        return f"generation failed: {row['error']}"
    return None


def subset_ids(run: str | Path, max_dialogues: int) -> set[str]:
    """The first `max_dialogues` dialogue ids of the run's fixed subset (manifest order)."""
    ids = read_manifest(run).get("data", {}).get("dialogues")
    if not isinstance(ids, list):
        raise RunFileError(
            f"{run}: manifest.json lists no dialogues; cannot cut to {max_dialogues}"
        )
    return set(ids[:max_dialogues])


def complete_prefix(run: str | Path) -> int:
    """How many dialogues, in subset order, are completely generated (for comparable tables)."""
    manifest = read_manifest(run)
    per_dialogue = manifest.get("targets_per_dialogue", {})
    done: dict[str, int] = {}
    for row in read_rows(run).rows:
        done[row["dialogue_id"]] = done.get(row["dialogue_id"], 0) + 1
    count = 0
    for did in manifest.get("data", {}).get("dialogues", []):
        if did not in per_dialogue or done.get(did, 0) < per_dialogue[did]:
            break
        count += 1
    return count


def read_rows(
    run: str | Path, *, strict: bool = False, max_dialogues: int | None = None
) -> RunRows:
    """Read a run's usable generation rows; the last row per key wins.

    Args:
        max_dialogues: keep only the first N dialogues of the run's subset (to compare runs
            that stopped at different points on the same dialogues).

    Raises:
        RunFileError: no generations file, or (strict) any malformed row.
    """
    path = Path(run) / GENERATIONS_FILE
    if not path.is_file():
        raise RunFileError(f"{path} not found: run `solace eval generate --out {run}` first")
    by_key: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for lineno, obj, problem in iter_jsonl(path):
        if obj is not None:
            problem = validate_row(obj)
            if problem is not None:
                problem = f"{path.name}:{lineno}: {problem}"
        if problem is not None:
            if strict:
                raise RunFileError(problem)
            problems.append(problem)
            continue
        assert obj is not None
        by_key[obj["key"]] = obj
    rows = list(by_key.values())
    if max_dialogues is not None:
        keep = subset_ids(run, max_dialogues)
        rows = [r for r in rows if r["dialogue_id"] in keep]
    return RunRows(rows=rows, problems=problems)


def done_keys(run: str | Path) -> set[str]:
    """Keys already generated successfully (for resuming)."""
    path = Path(run) / GENERATIONS_FILE
    if not path.is_file():
        return set()
    return {obj["key"] for _, obj, _ in iter_jsonl(path) if obj and validate_row(obj) is None}


def append_row(run: str | Path, row: dict[str, Any]) -> None:
    """Append one row and flush it to disk, so a crash loses at most the turn in flight."""
    path = Path(run) / GENERATIONS_FILE
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_manifest(run: str | Path) -> dict[str, Any]:
    """The run's manifest, or {} if it has none."""
    path = Path(run) / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{path}: not JSON ({exc.msg})") from exc
    return data if isinstance(data, dict) else {}
