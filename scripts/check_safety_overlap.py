"""Check that no training row of the semantic layer repeats or nearly repeats an evaluation case.

    PYTHONPATH=. python scripts/check_safety_overlap.py [TRAINING_FILES...] [--drop]

Compares each training row (default: every hand-written file in data/safety/) with every message
and earlier turn of the dev (`tests/safety_cases/*.jsonl`), validation and held-out case files
(v2 and v3), by `bot.safety.semantic_data.near_repeats` (same normalised text, or difflib
similarity >= 0.85). Prints only the training side: for each overlapping training row its file,
line and the name of the evaluation set it is near (never an evaluation text), and a count per
set. `--drop` removes the overlapping rows from the training files. Exit status 1 if any remain.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bot.safety.semantic_data import ESCONV_LABELS, near_repeats, read_jsonl

CASES = Path("tests/safety_cases")


def evaluation_sets() -> dict[str, list[str]]:
    """Every evaluation text, by set name (dev, v2-validation, v2-heldout, v3-heldout)."""
    groups = {
        "dev": sorted(CASES.glob("*.jsonl")),
        "v2-validation": sorted((CASES / "v2").glob("validation*.jsonl")),
        "v2-heldout": sorted((CASES / "v2").glob("heldout*.jsonl")),
        "v3-heldout": sorted((CASES / "v3").glob("heldout*.jsonl")),
    }
    out: dict[str, list[str]] = {}
    for name, files in groups.items():
        out[name] = [
            t for f in files for r in read_jsonl(f) for t in [r["text"], *r.get("turns", ())]
        ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--drop", action="store_true", help="remove overlapping rows")
    args = parser.parse_args()
    files = args.files or sorted(
        p for p in Path("data/safety").glob("*.jsonl") if p.name != ESCONV_LABELS
    )
    sets = evaluation_sets()
    print("evaluation texts:", {k: len(v) for k, v in sets.items()})
    remaining = 0
    for path in files:
        rows = read_jsonl(path)
        texts = [r["text"] for r in rows]
        hits: dict[int, list[str]] = {}
        for name, others in sets.items():
            for i in near_repeats(texts, others):
                hits.setdefault(i, []).append(name)
        for i, names in sorted(hits.items()):
            print(f"{path}:{i + 1}: near {', '.join(names)}")
        print(f"{path}: {len(rows)} rows, {len(hits)} overlapping")
        if args.drop and hits:
            kept = [r for i, r in enumerate(rows) if i not in hits]
            path.write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), "utf-8"
            )
        elif hits:
            remaining += len(hits)
    return 1 if remaining else 0


if __name__ == "__main__":
    sys.exit(main())
