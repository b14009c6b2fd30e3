"""Assemble results/compare/tables.md and summary.json from the pieces in evaluation.compare."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from evaluation.compare import (
    LLM_ESC,
    TABLE6,
    beats_base,
    caveats,
    choose,
    copy_small_files,
    length_analysis,
    load_scored,
    metric_table,
    papers_table,
    training_table,
)

METHOD_ROWS = ("lora-r16-top12", "lora-r32-all", "adapter", "full")
SCORED_FILES = ("metrics.json", "metrics.md", "manifest.json")
TRAIN_FILES = ("manifest.json", "config.json", "data_stats.json", "loss_history.csv",
               "loss_curve.png")  # fmt: skip


def table6_names() -> list[str]:
    """ExTES Table 6 rows: base, the old adapter, each method without/with strategies (hybrid)."""
    return ["base-hybrid", "shipped-2026-11-hybrid"] + [
        f"{m}-hybrid{s}" for m in METHOD_ROWS for s in ("", "-strategies")
    ]


def llm_esc_names() -> list[str]:
    """LLM-ESC rows: base and each method, raw and hybrid history (no strategies)."""
    return ["base-raw", "base-hybrid"] + [
        f"{m}-{r}" for m in METHOD_ROWS for r in ("raw", "hybrid")
    ]


def provenance(scored: dict[str, dict]) -> list[str]:
    """What every number used, from one run's metrics.json entries."""
    if not scored:
        return []
    any_run = next(iter(scored.values()))["raw"]["metrics"]
    lines = []
    for key in ("ppl", "meteor", "bertscore_f1", "extrema", "bleu_2"):
        e = any_run.get(key) or {}
        used = e.get("model") or e.get("embeddings") or e.get("wordnet") or ""
        lines.append(f"- {e.get('label', key)}: {e.get('implementation', '')}"
                     f"{'; ' + str(used) if used else ''}; tokens: {e.get('tokenizer', 'the model')}")  # fmt: skip
    return lines


def extes_note() -> str:
    """Whether the cross-dataset rows could be run."""
    data = Path(os.environ.get("SOLACE_DATA_DIR", "")) / "extes" / "ExTES.json"
    if data.is_file():
        return f"An ExTES file is present ({data}): see the cross-dataset rows."
    return ("**No cross-dataset rows**: the full ExTES file (`$SOLACE_DATA_DIR/extes/ExTES.json`) is "
            "not available here, only an 11-dialogue fragment (9 train / 2 test, one with strategy "
            "labels), too small to train or test on. With the file in place, "
            "`bash results/compare.sh cross` trains on ExTES and tests both ways.")  # fmt: skip


def section_valid(
    valid: dict[str, dict], root: Path, train: Path, base: str
) -> tuple[list[str], dict]:
    """The choosing half: both layouts on valid, training cost, backend control, the choice."""
    out = ["## Choosing on ESConv valid (12 dialogues, 125 supporter turns per row)", "",
           "### ExTES paper's Table 6 layout (method x strategies; hybrid history, as served)", "",
           metric_table(valid, table6_names(), TABLE6), "", papers_table("extes_table6"), "",
           "### LLM-ESC paper's layout (context representation; no strategies)", "",
           metric_table(valid, llm_esc_names(), LLM_ESC), "", papers_table("llm_esc_esconv"), "",
           papers_table("llm_esc_lengths"), "", "### Cross-dataset", "", extes_note(), ""]  # fmt: skip
    names = [n for n in dict.fromkeys(table6_names() + llm_esc_names()) if "-" in n and
             not n.startswith(("base", "shipped"))]  # fmt: skip
    table, info = training_table(train, names)
    out += ["### Training cost at the equal budget (36k target tokens)", "", table, "",
            "### Backend control: the same adapter through llama.cpp and transformers", "",
            metric_table(valid, ["lora-r16-top12-hybrid", "lora-r16-top12-hybrid-hf"], LLM_ESC),
            ""]  # fmt: skip
    servable = [f"{m}-hybrid" for m in METHOD_ROWS]  # the bot serves hybrid, strips no prefix
    chosen, ranking = choose(valid, servable)
    out += ["### The choice", "", "Candidates: the rows the bot can serve as they are (hybrid "
            "history, no strategy prefix to strip). Rank per metric, lower is better:", "",
            ranking, "", f"**Chosen on valid: `{chosen}`.**", ""]  # fmt: skip
    lengths_md, lengths = length_analysis(root, base, [n for n in table6_names() if n in valid])
    out += ["### METEOR and BERTScore at matched reply length (valid)", "", lengths_md, ""]
    return out, {"chosen": chosen, "training": info, "length_matched_valid": lengths}


def section_test(
    test: dict[str, dict], root: Path, chosen: str | None, base: str
) -> tuple[list[str], dict]:
    """The confirming half: the base and the chosen model on ESConv test."""
    if not test:
        return ["## ESConv test", "", "Not run yet (`WINNER=<row> bash results/compare.sh test`).",
                ""], {}  # fmt: skip
    names = ["base-raw", "base-hybrid", "shipped-2026-11-hybrid", *sorted(
        n for n in test if not n.startswith(("base", "shipped")))]  # fmt: skip
    model = next((n for n in names if n not in ("base-raw", "base-hybrid", "shipped-2026-11-hybrid")
                  and n in test), chosen)  # fmt: skip
    lengths_md, lengths = length_analysis(root, base, [n for n in names if n in test])
    out = ["## ESConv test (the 50 dialogues of results/esconv50, 597 supporter turns)", "",
           "### ExTES Table 6 layout", "", metric_table(test, names, TABLE6), "",
           "### LLM-ESC layout", "", metric_table(test, names, LLM_ESC), "",
           "### METEOR and BERTScore at matched reply length (test)", "", lengths_md, ""]  # fmt: skip
    if model in test and base in test:
        out += [f"### Does `{model}` beat the base (`{base}`) where it counts?", "",
                beats_base(test, base, model, lengths.get(model)), ""]  # fmt: skip
    return out, {"model": model, "length_matched_test": lengths}


def write_tables(valid_dir: Path, test_dir: Path, train: Path, out: Path, base: str) -> Path:
    """tables.md + summary.json + length_matched.json + the small per-row files."""
    valid = load_scored(valid_dir)
    test = load_scored(test_dir) if test_dir.is_dir() else {}
    lines = ["# Method comparison: tables", "",
             "Generated by `python -m evaluation.compare` (`bash results/compare.sh tables`); "
             "the reading of them is in results/README.md.", "", "What every number used:", "",
             *provenance(valid or test), "", "The papers' figures, with caveats:", "", *caveats(),
             ""]  # fmt: skip
    valid_md, summary = (
        section_valid(valid, valid_dir, train, base) if valid else ([], {"chosen": None})
    )
    test_md, test_summary = section_test(test, test_dir, summary.get("chosen"), base)
    lines += valid_md + test_md
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    lengths = {"valid": summary.pop("length_matched_valid", {}),
               "test": test_summary.pop("length_matched_test", {})}  # fmt: skip
    (out / "length_matched.json").write_text(json.dumps(lengths, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps({**summary, **test_summary}, indent=2) + "\n")
    copy_small_files(valid_dir, out / "valid", list(valid), SCORED_FILES)
    copy_small_files(test_dir, out / "test", list(test), SCORED_FILES)
    copy_small_files(train, out / "train", list(summary.get("training", {})), TRAIN_FILES)
    return out / "tables.md"


def summary_of(out: Path) -> dict[str, Any]:
    """summary.json of a written comparison."""
    return json.loads((out / "summary.json").read_text())
