"""Check that no training row of the semantic layer repeats or nearly repeats an evaluation case.

    PYTHONPATH=. python scripts/check_safety_overlap.py [TRAINING_FILES...] [--drop]

Compares each training row (default: every hand-written file in data/safety/, and the trained
half of the spent v3 set) with every message and earlier turn of the dev
(`tests/safety_cases/*.jsonl`), v2 validation and held-out files and the threshold half of the
spent v3 set plus its conversations, by `bot.safety.semantic_data.near_repeats` (same
normalised text, or difflib similarity >= 0.85). v3 was spent at 2f993d9 and is development
data since 2026-12-07: its trained half is training data, so rows near it are no leak. Files
are named one by one: a current held-out folder (`tests/safety_cases/v4/`) is not read here;
whoever may read it checks it separately. Prints only the training side: for each overlapping training row its file,
line and the name of the evaluation set it is near (never an evaluation text), and a count per
set. `--drop` removes the overlapping rows from the training files. Exit status 1 if any remain.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bot.safety.semantic_data import (
    ESCONV_LABELS,
    SPENT_V3,
    SPENT_V3_CONVERSATIONS,
    case_rows,
    dev_case_files,
    near_repeats,
    read_jsonl,
    v3_training_rows,
)

CASES = Path("tests/safety_cases")


def evaluation_sets() -> dict[str, list[str]]:
    """Every evaluation text, by set name (dev, v2-validation, v2-heldout, v3-pool)."""
    groups = {
        "dev": [*dev_case_files(), CASES / "heldout.jsonl"],
        "v2-validation": [
            CASES / "v2" / "validation.jsonl",
            CASES / "v2" / "validation_conversations.jsonl",
        ],
        "v2-heldout": [
            CASES / "v2" / "heldout.jsonl",
            CASES / "v2" / "heldout_conversations.jsonl",
        ],
        "v3-pool": [SPENT_V3, SPENT_V3_CONVERSATIONS],
    }
    out: dict[str, list[str]] = {}
    for name, files in groups.items():
        out[name] = [
            t
            for f in files
            if f.is_file()
            for r in case_rows(f)
            for t in [r["text"], *r.get("turns", ())]
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
    if not args.files:  # the trained half of v3 is training data too (it cannot be dropped)
        texts = [r["text"] for r in v3_training_rows()]
        hits_v3 = {i for others in sets.values() for i in near_repeats(texts, others)}
        print(f"{SPENT_V3} (trained half): {len(texts)} rows, {len(hits_v3)} overlapping")
        print("  (training leaves those out itself: semantic_train excludes near-repeats)")
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
