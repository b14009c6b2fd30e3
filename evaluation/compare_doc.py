"""Assemble results/compare/tables.md and summary.json from the pieces in evaluation.compare.

    python -m evaluation.compare_doc --valid runs/compare-valid --test runs/compare-test \
        --train-runs runs/compare --out results/compare
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from evaluation.compare import (
    LLM_ESC,
    SHIPPABLE,
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
from evaluation.compare_rows import RowStatus, comparison_rows, status_table
from evaluation.report import markdown_table

METHOD_ROWS = ("lora-r16-top12", "lora-r32-all", "adapter", "full")
# The bot serves hybrid history, strips no strategy prefix, and runs GGUFs through llama.cpp.
SERVABLE = ("lora-r16-top12-hybrid", "lora-r32-all-hybrid", "full-hybrid")
# The row of the shipped model (the winner trained longer, exported to models/).
DEFAULT_ROW = "solace-default-hybrid"
SCORED_FILES = ("metrics.json", "metrics.md", "manifest.json")
TRAIN_FILES = ("manifest.json", "config.json", "data_stats.json", "loss_history.csv",
               "loss_curve.png")  # fmt: skip


def table6_names() -> list[str]:
    """ExTES Table 6 rows: base, the old adapter, each method without/with strategies (hybrid)."""
    return ["base-hybrid", "shipped-2026-11-hybrid", DEFAULT_ROW] + [
        f"{m}-hybrid{s}" for m in METHOD_ROWS for s in ("", "-strategies")
    ]


def llm_esc_names() -> list[str]:
    """LLM-ESC rows: base and each method, raw and hybrid history (no strategies)."""
    return ["base-raw", "base-hybrid", DEFAULT_ROW] + [
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
    valid: dict[str, dict], root: Path, train: Path, base: str, steps: dict[str, str]
) -> tuple[list[str], dict]:
    """The choosing half: both layouts on valid, training cost, backend control, the choice."""
    out = ["## Choosing on ESConv valid (12 dialogues, 125 supporter turns per row)", "",
           "### ExTES paper's Table 6 layout (method x strategies; hybrid history, as served)", "",
           metric_table(valid, table6_names(), TABLE6, steps), "", papers_table("extes_table6"), "",
           "### LLM-ESC paper's layout (context representation; no strategies)", "",
           metric_table(valid, llm_esc_names(), LLM_ESC, steps), "",
           papers_table("llm_esc_esconv"), "",
           papers_table("llm_esc_lengths"), "", "### Cross-dataset", "", extes_note(), ""]  # fmt: skip
    names = [n for n in dict.fromkeys(table6_names() + llm_esc_names()) if "-" in n and
             not n.startswith(("base", "shipped", "solace"))]  # fmt: skip
    table, info = training_table(train, names)
    out += ["### Training cost at the equal budget (36k target tokens)", "", table, "",
            "### Backend control: the same adapter through llama.cpp and transformers", "",
            metric_table(valid, ["lora-r16-top12-hybrid", "lora-r16-top12-hybrid-hf"], LLM_ESC,
                         steps), ""]  # fmt: skip
    chosen, ranking = choose(valid, SERVABLE)
    shipped = chosen
    if chosen is not None and not chosen.startswith(SHIPPABLE):
        shipped = choose(valid, [n for n in SERVABLE if n.startswith(SHIPPABLE)])[0]
    out += ["### The choice", "", "Candidates: the rows the bot can serve as they are — hybrid "
            "history, no strategy prefix to strip, a GGUF llama.cpp runs (a LoRA adapter on the "
            "embedded base; a full fine-tune as a merged GGUF). The adaption prompt is not one: "
            "llama.cpp has no such adapter. Rank per metric, lower is better:", "",
            ranking, "", f"**Chosen on valid: `{chosen}`.**", ""]  # fmt: skip
    if shipped != chosen:
        out += [f"`{chosen}` is not committable (a merged GGUF of the whole model, ~90 MB at "
                f"Q4_1; models/ keeps small files): the best committable row is `{shipped}`; "
                "the gap between them is in the tables above.", ""]  # fmt: skip
    lengths_md, lengths = length_analysis(root, base, [n for n in table6_names() if n in valid])
    out += ["### METEOR and BERTScore at matched reply length (valid)", "", lengths_md, ""]
    return out, {"chosen": chosen, "shipped": shipped, "training": info,
                 "length_matched_valid": lengths}  # fmt: skip


def section_long(
    run: Path | None,
    valid: dict[str, dict],
    chosen: str | None,
    config: Path | None = None,
    status: RowStatus | None = None,
) -> tuple[list[str], dict]:
    """The winner trained longer: its eval-loss curve, where it stopped improving, and its
    valid scores beside the equal-budget row."""
    head = ["### The winner trained longer (early stopping on eval loss)", ""]
    if run is None or not (run / "loss_history.csv").is_file():
        return head + ["Not run yet (`bash results/compare.sh long`).", ""], {}
    curve = eval_curve(run)
    cfg = run_config(run, config)
    manifest = run / "manifest.json"
    done = json.loads(manifest.read_text())["metrics"] if manifest.is_file() else None
    best = early_best(curve, cfg)[0] if curve else None  # as the trainer's early stopping keeps
    rows = [[str(r["step"]), f"{r['epoch']:.3f}", f"{r['eval_loss']:.4f}",
             "best" if r is best else "", f"{r['tokens']:,}", f"{r['elapsed_s'] / 3600:.1f}"]
            for r in curve]  # fmt: skip
    out = head + [f"`{run.name}` (curve: `train/{run.name}/loss_curve.png`): the "
                  f"equal-budget winner `{chosen}` with epochs = {cfg.get('epochs')}, "
                  f"{cfg.get('lr_scheduler')} learning rate {cfg.get('learning_rate')}, eval "
                  f"every {cfg.get('eval_every')} steps on the same 24 ESConv valid windows, "
                  f"patience {cfg.get('early_stopping_patience')} evals (min delta "
                  f"{cfg.get('early_stopping_min_delta')}).", "",
                  markdown_table(["Step", "Epoch", "Eval loss", "", "Window tokens",
                                  "Wall time (h)"], rows), ""]  # fmt: skip
    out += [long_status(curve, cfg, done, status), ""]
    if DEFAULT_ROW in valid:
        out += [f"Valid scores of the exported model (`{DEFAULT_ROW}`) beside the equal-budget "
                "row:", "", metric_table(valid, [n for n in ("base-hybrid", chosen, DEFAULT_ROW)
                                                  if n], TABLE6), ""]  # fmt: skip
    info = {"run": run.name, "curve": curve, "finished": done is not None,
            "weights_step": done.get("weights_step") if done else None}  # fmt: skip
    return out, info


def run_config(run: Path, config: Path | None) -> dict[str, Any]:
    """A run's config: its config.json once finished, else the TOML it is training from."""
    if (run / "config.json").is_file():
        return dict(json.loads((run / "config.json").read_text()))
    if config is None or not config.is_file():
        return {}
    from common.configfile import read_toml_extending

    return read_toml_extending(config)  # its keys as written (the evaluation imports no trainer)


def eval_curve(run: Path) -> list[dict[str, Any]]:
    """The eval rows of a run's loss_history.csv."""
    import csv

    with (run / "loss_history.csv").open() as fh:
        return [{"step": int(r["step"]), "epoch": float(r["epoch"]),
                 "eval_loss": float(r["eval_loss"]), "tokens": int(r["tokens"]),
                 "elapsed_s": float(r["elapsed_s"])}
                for r in csv.DictReader(fh) if r.get("eval_loss")]  # fmt: skip


def early_best(curve: list[dict], cfg: dict) -> tuple[dict, int]:
    """The eval the trainer's early stopping counts as best (an improvement must beat
    `early_stopping_min_delta`), and how many evals came after it without a new best."""
    delta = float(cfg.get("early_stopping_min_delta") or 0.0)
    best, since = curve[0], 0
    for r in curve[1:]:
        if r["eval_loss"] < best["eval_loss"] - delta:
            best, since = r, 0
        else:
            since += 1
    return best, since


def long_status(
    curve: list[dict[str, Any]],
    cfg: dict[str, Any],
    done: dict | None,
    status: RowStatus | None = None,
) -> str:
    """Where the curve stops improving, and whether the run stopped there or was cut short."""
    if not curve:
        return "No eval yet."
    best, since = early_best(curve, cfg)
    patience = cfg.get("early_stopping_patience")
    where = (f"Best eval loss {best['eval_loss']:.4f} at step {best['step']} (epoch "
             f"{best['epoch']:.2f}); {since} eval(s) since without a new best.")  # fmt: skip
    if done is None:
        reached = status.steps_text() if status else f"last eval at step {curve[-1]['step']}"
        return (f"**Unfinished: {reached}** (no manifest.json; `bash results/compare.sh long` "
                f"resumes it from its last checkpoint). Last eval at step {curve[-1]['step']}. "
                f"{where} Nothing was exported from it.")  # fmt: skip
    if patience is not None and since >= patience:
        return (f"**Stopped improving at step {best['step']}**: early stopping after {since} "
                f"evals without a new best. {where} The exported weights are step "
                f"{done.get('weights_step')}'s.")  # fmt: skip
    return (f"**Ended at step {done['steps']} before the curve stopped improving** (the run's "
            f"horizon or `--set max_steps`, for compute). {where} The exported weights are step "
            f"{done.get('weights_step')}'s.")  # fmt: skip


def section_test(
    test: dict[str, dict], root: Path, chosen: str | None, base: str
) -> tuple[list[str], dict]:
    """The confirming half: the base and the chosen model on ESConv test."""
    if not test:
        return ["## ESConv test", "", "Not run yet (`WINNER=<row> bash results/compare.sh test`).",
                ""], {}  # fmt: skip
    names = ["base-raw", "base-hybrid", "shipped-2026-11-hybrid", *sorted(
        n for n in test if not n.startswith(("base", "shipped")))]  # fmt: skip
    model = DEFAULT_ROW if DEFAULT_ROW in test else next(
        (n for n in names if n not in ("base-raw", "base-hybrid", "shipped-2026-11-hybrid")
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


def write_tables(
    valid_dir: Path,
    test_dir: Path,
    train: Path,
    out: Path,
    base: str,
    long_run: Path | None = None,
    long_config: Path | None = None,
    configs: Path = Path("configs/train/compare"),
) -> Path:
    """tables.md + summary.json + length_matched.json + the small per-row files."""
    valid = load_scored(valid_dir)
    test = load_scored(test_dir) if test_dir.is_dir() else {}
    statuses = comparison_rows(train, configs, DEFAULT_ROW, long_run, long_config)
    steps = {r.name: r.steps_text() for r in statuses}
    lines = ["# Method comparison: tables", "",
             "Generated by `python -m evaluation.compare_doc` (`bash results/compare.sh tables`); "
             "the reading of them is in results/README.md.", "", "What every number used:", "",
             *provenance(valid or test), "", "The papers' figures, with caveats:", "", *caveats(),
             "", "## Every row: model, config, training data, steps", "",
             "Training data is ESConv's own train split (910 dialogues); eval loss is on 24 fixed "
             "ESConv valid windows. A row is done when its run wrote manifest.json; partial rows "
             "stopped (for compute) before their planned steps and are not scored; `bash "
             "results/compare.sh train` resumes them.", "", status_table(statuses, valid, "valid"),
             ""]  # fmt: skip
    valid_md, summary = (
        section_valid(valid, valid_dir, train, base, steps) if valid else ([], {"chosen": None})
    )
    long_status_row = next((r for r in statuses if r.name == DEFAULT_ROW), None)
    long_md, long_info = section_long(long_run, valid, summary.get("chosen"), long_config,
                                      long_status_row)  # fmt: skip
    summary["long_run"] = long_info
    summary["rows"] = {r.name: {"model": r.model, "config": r.config, "data": r.data,
                                "steps": r.steps_text(), "scored_valid": r.name in valid}
                       for r in statuses}  # fmt: skip
    test_md, test_summary = section_test(test, test_dir, summary.get("chosen"), base)
    lines += valid_md + long_md + test_md
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    lengths = {"valid": summary.pop("length_matched_valid", {}),
               "test": test_summary.pop("length_matched_test", {})}  # fmt: skip
    (out / "length_matched.json").write_text(json.dumps(lengths, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps({**summary, **test_summary}, indent=2) + "\n")
    copy_small_files(valid_dir, out / "valid", list(valid), SCORED_FILES)
    copy_small_files(test_dir, out / "test", list(test), SCORED_FILES)
    copy_small_files(train, out / "train", [r.name for r in statuses], TRAIN_FILES)
    if long_run is not None and long_run.is_dir():
        copy_small_files(long_run.parent, out / "train", [long_run.name], TRAIN_FILES)
    return out / "tables.md"


def summary_of(out: Path) -> dict[str, Any]:
    """summary.json of a written comparison."""
    return json.loads((out / "summary.json").read_text())


@click.command()
@click.option(
    "--valid", "valid_dir", type=click.Path(file_okay=False, path_type=Path), required=True
)
@click.option("--test", "test_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--train-runs", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--base", default="base-hybrid", show_default=True, help="Row to compare against.")
@click.option(
    "--long-run",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The winner's longer training run (its eval-loss curve and where it stops improving).",
)
@click.option(
    "--long-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The TOML the longer run trains from (read while it has no config.json yet).",
)
@click.option(
    "--configs",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("configs/train/compare"),
    show_default=True,
    help="The comparison's row configs (one TOML per row).",
)
def main(
    valid_dir: Path,
    test_dir: Path,
    train_runs: Path,
    out: Path,
    base: str,
    long_run: Path | None,
    long_config: Path | None,
    configs: Path,
) -> None:
    """Write the comparison tables from scored valid/test runs and the training runs."""
    write_tables(valid_dir, test_dir, train_runs, out, base, long_run, long_config, configs)
    click.echo(f"tables: {out / 'tables.md'}")


if __name__ == "__main__":
    main()
