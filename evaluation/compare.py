"""The method comparison's tables (results/compare/): both papers' layouts beside the papers'
figures, training cost, the backend control, the length-matched METEOR/BERTScore analysis, the
choice of the model to ship, and the item-4 check against the base on test.

    python -m evaluation.compare_doc --valid runs/compare-valid --test runs/compare-test \
        --train-runs runs/compare --out results/compare

Reads each scored run's `metrics.json` / `manifest.json` / `generations.jsonl` and each training
run's `manifest.json`; writes `tables.md`, `summary.json`, `length_matched.json` and copies the
small per-row files (metrics, manifests, loss history and curve) under `valid/`, `test/` and
`train/`. No generated text is copied.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluation.report import markdown_table

PAPERS = Path(__file__).parent / "resources" / "papers_figures.json"
TABLE6 = ("ppl", "meteor", "bleu_2", "bleu_4", "rouge_l", "extrema", "distinct_1", "distinct_2",
          "distinct_3", "len_generated", "len_reference")  # fmt: skip
LLM_ESC = ("ppl", "bleu_2", "bleu_4", "rouge_l", "meteor", "bertscore_p", "bertscore_r",
           "bertscore_f1", "len_generated", "len_reference", "len_context")  # fmt: skip
HEAD = {"ppl": "PPL", "meteor": "METEOR", "bleu_2": "B-2", "bleu_4": "B-4", "rouge_l": "R-L",
        "extrema": "Extrema", "distinct_1": "D-1", "distinct_2": "D-2", "distinct_3": "D-3",
        "bertscore_p": "BERT P", "bertscore_r": "BERT R", "bertscore_f1": "BERT F1",
        "len_generated": "Len", "len_reference": "Ref len", "len_context": "Ctx utt len"}  # fmt: skip
# Item 4: where the shipped model must beat the base (lower PPL, higher the rest).
MUST_BEAT = ("ppl", "bleu_2", "bleu_4", "rouge_l", "distinct_1", "distinct_2", "distinct_3",
             "extrema")  # fmt: skip
RANKED = ("ppl", "bleu_2", "bleu_4", "rouge_l", "meteor", "bertscore_f1", "extrema", "distinct_2")
LENGTH_BAND = 0.25  # mean reply length within ±25% of the references'
METHODS = {"lora-r16-top12": "LoRA r16, top 12 layers, q/k/v/o (today's)",
           "lora-r32-all": "LoRA r32, all 30 layers, all linear", "adapter":
           "Adaption prompt (LLaMA-Adapter), 10 x 30 layers", "full": "Full fine-tune",
           "base": "SmolLM2-135M-Instruct base (no training)",
           "shipped-2026-11": "Shipped adapter until now (LoRA r16 top 12, 1 epoch, raw-trained)",
           "solace-default": "Solace's default: the winner trained longer, early-stopped"}  # fmt: skip
# What the bot can serve and the repository can ship (models/ stays small): a LoRA GGUF applied
# to the embedded base. A full fine-tune serves only as a merged GGUF (~90 MB at Q4_1, not
# committable); an adaption prompt has no GGUF form at all (llama.cpp has no such adapter).
SHIPPABLE = ("lora-r16-top12", "lora-r32-all")


def describe(name: str) -> dict[str, str]:
    """Method label, representation and strategies of a row name."""
    backend = "transformers" if name.endswith("-hf") or name.startswith("adapter") else "llama.cpp"
    core = name.removesuffix("-hf")
    method = next((v for k, v in METHODS.items() if core.startswith(k)), core)
    rep = "raw" if "-raw" in core else "hybrid"
    return {"method": method, "representation": rep,
            "strategies": "yes" if "strategies" in core else "no", "backend": backend}  # fmt: skip


def load_scored(root: Path) -> dict[str, dict[str, Any]]:
    """name -> {metrics: {key: value}, manifest, rows, dialogues} for every scored run."""
    out = {}
    for metrics in sorted(root.glob("*/metrics.json")):
        data = json.loads(metrics.read_text())
        values = {k: v.get("value") for k, v in data["metrics"].items() if isinstance(v, dict)}
        out[metrics.parent.name] = {"metrics": values, "rows": data["rows"],
                                    "dialogues": data["dialogues"], "raw": data}  # fmt: skip
    return out


def fmt(value: float | None, key: str = "") -> str:
    """Two decimals (three for PPL); an em dash for a missing value."""
    if value is None:
        return "—"
    return f"{value:.3f}" if key == "ppl" else f"{value:.2f}"


def metric_table(
    scored: dict[str, dict],
    names: Sequence[str],
    cols: Sequence[str],
    steps: dict[str, str] | None = None,
) -> str:
    """One row per run: method, context, strategies, [steps,] turns, then `cols`. With `steps`
    (row -> "38 (done)", "partial (step 15 of 32)", "not run"), rows that were not scored are
    listed too, their metrics a dash, so a table never hides a row that did not finish."""
    header = ["Run", "Method", "Context", "Strategies", *(["Steps"] if steps is not None else []),
              "Turns", *[HEAD[c] for c in cols]]  # fmt: skip
    rows = []
    for name in names:
        if name not in scored and (steps is None or name not in steps):
            continue
        d, s = describe(name), scored.get(name)
        step = [steps.get(name, "—")] if steps is not None else []
        values = [fmt(s["metrics"].get(c), c) for c in cols] if s else ["—"] * len(cols)
        rows.append([f"`{name}`", d["method"], d["representation"], d["strategies"], *step,
                     str(s["rows"]) if s else "—", *values])  # fmt: skip
    return markdown_table(header, rows)


def papers_table(key: str) -> str:
    """One of the papers' tables from resources/papers_figures.json."""
    table = json.loads(PAPERS.read_text())[key]
    header = ["Model", "Variant", *[HEAD.get(c, c) for c in table["columns"]]]
    rows = [[r["model"], r["variant"], *[fmt(v, c) for v, c in zip(r["values"], table["columns"],
                                                                    strict=True)]]
            for r in table["rows"]]  # fmt: skip
    return f"*{table['title']}*\n\n" + markdown_table(header, rows)


def caveats() -> list[str]:
    """The caveats printed with the papers' figures."""
    return [f"- {c}" for c in json.loads(PAPERS.read_text())["caveats"]]


def training_table(train_root: Path, names: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Trainable weights, budget actually used, eval loss, wall time per training row."""
    header = ["Row", "Trainable weights", "Steps", "Window tokens", "Target tokens (est.)",
              "Eval loss step 0 → end", "Best (step)", "Wall time", "Tokens/s"]  # fmt: skip
    rows, info = [], {}
    for name in names:
        path = train_root / name / "manifest.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        metrics, data = m["metrics"], m["data"]
        first = _first_eval(train_root / name)
        targets = data["target_tokens"] * metrics["tokens"] / max(data["tokens"], 1)
        info[name] = {**metrics, "eval_loss_step0": first, "target_tokens_estimate": targets}
        rows.append([f"`{name}`", f"{metrics.get('trainable_parameters', 0):,}",
                     str(metrics["steps"]), f"{metrics['tokens']:,}", f"{targets:,.0f}",
                     f"{fmt(first)} → {fmt(metrics['final_eval_loss'])}",
                     f"{fmt(metrics.get('best_eval_loss'))} ({metrics.get('best_step')})",
                     f"{metrics['train_runtime_s'] / 60:.0f} min",
                     f"{metrics['tokens_per_s']:.0f}"])  # fmt: skip
    return markdown_table(header, rows), info


def _first_eval(run: Path) -> float | None:
    import csv

    with (run / "loss_history.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row.get("eval_loss"):
                return float(row["eval_loss"])
    return None


def choose(scored: dict[str, dict], candidates: Sequence[str]) -> tuple[str | None, str]:
    """The candidate with the best mean rank over RANKED among those whose mean reply length
    is within LENGTH_BAND of the references'; the ranking as a table."""
    ok = [n for n in candidates if n in scored and _length_ok(scored[n]["metrics"])]
    ranks: dict[str, list[int]] = {n: [] for n in ok}
    for key in RANKED:  # competition ranking: ties share the better rank
        sign = 1.0 if key == "ppl" else -1.0  # lower PPL is better, higher everything else
        value = {n: sign * (scored[n]["metrics"].get(key) or 0.0) for n in ok}
        for n in ok:
            ranks[n].append(1 + sum(value[m] < value[n] for m in ok))
    mean = {n: sum(r) / len(r) for n, r in ranks.items() if r}
    order = sorted(mean, key=lambda n: mean[n])
    header = ["Candidate", "Mean rank", *[HEAD[k] for k in RANKED]]
    rows = [[f"`{n}`", f"{mean[n]:.2f}", *[str(r) for r in ranks[n]]] for n in order]
    excluded = [n for n in candidates if n in scored and n not in ok]
    note = (
        f"\n\nExcluded (mean reply length outside ±25% of the references): {excluded}"
        if excluded
        else ""
    )
    return (order[0] if order else None), markdown_table(header, rows) + note


def _length_ok(metrics: dict[str, float | None]) -> bool:
    gen, ref = metrics.get("len_generated"), metrics.get("len_reference")
    return bool(gen and ref and abs(gen / ref - 1) <= LENGTH_BAND)


def beats_base(scored: dict[str, dict], base: str, model: str, lengths: dict | None) -> str:
    """Item 4: the model against the base, metric by metric, with the length check."""
    b, m = scored[base]["metrics"], scored[model]["metrics"]
    rows = []
    for key in MUST_BEAT:
        better = (m[key] < b[key]) if key == "ppl" else (m[key] > b[key])
        rows.append([HEAD[key], fmt(b[key], key), fmt(m[key], key), "yes" if better else "**no**"])
    ratio = m["len_generated"] / m["len_reference"]
    rows.append(["Len / Ref len", f"{b['len_generated'] / b['len_reference']:.2f}", f"{ratio:.2f}",
                 "yes" if abs(ratio - 1) <= LENGTH_BAND else "**no**"])  # fmt: skip
    for key in ("meteor", "bertscore_f1"):
        verdict = "—"
        if lengths:
            adj = lengths[key]["length_adjusted_gap"]
            verdict = "yes" if adj is not None and adj >= -abs(_ci_half(lengths[key])) else "**no**"
            verdict += f" (length-adjusted gap {fmt(adj)})"
        rows.append([HEAD[key], fmt(b[key]), fmt(m[key]), verdict])
    return markdown_table(["Metric", f"`{base}`", f"`{model}`", "Model better?"], rows)


def _ci_half(entry: dict[str, Any]) -> float:
    boot = entry["bootstrap"]
    return 0.0 if boot["low"] is None else (boot["high"] - boot["low"]) / 2


def length_rows(name: str, result: dict[str, Any]) -> list[list[str]]:
    """Rows of the length-matched table for one comparison against the base."""
    out = []
    for key in ("meteor", "bertscore_f1"):
        r, boot = result[key], result[key]["bootstrap"]
        rm = result["ratio_matched"]
        out.append([f"`{name}`", HEAD[key], fmt(r["raw_gap"]),
                    f"[{fmt(boot['low'])}, {fmt(boot['high'])}]", fmt(r["length_adjusted_gap"]),
                    fmt(r["length_effect"]), f"{fmt(rm['a'][key])} / {fmt(rm['b'][key])}",
                    f"{rm['a']['turns']} / {rm['b']['turns']}", f"{r['turns_covered']:.0%}"])  # fmt: skip
    return out


def length_analysis(root: Path, base: str, names: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Length-matched METEOR / BERTScore of each run against `base` (per-turn scores)."""
    from evaluation.config import MetricsConfig
    from evaluation.length_match import compare_runs, per_turn_scores
    from evaluation.runs import read_rows

    cfg = MetricsConfig()
    base_scores = per_turn_scores(read_rows(root / base).rows, cfg)
    results, rows = {}, []
    for name in names:
        if name == base or not (root / name / "generations.jsonl").is_file():
            continue
        results[name] = compare_runs(base_scores, per_turn_scores(read_rows(root / name).rows, cfg))
        rows += length_rows(name, results[name])
    header = ["Run (vs " + f"`{base}`)", "Metric", "Raw gap", "95% CI", "Length-adjusted gap",
              "Length effect", "±25%-length turns: base / run", "Such turns", "Turns in used bins"]  # fmt: skip
    return markdown_table(header, rows), results


def copy_small_files(src: Path, dst: Path, names: Sequence[str], files: Sequence[str]) -> None:
    """The per-row files that are committed (no generations, no weights)."""
    for name in names:
        for f in files:
            if (src / name / f).is_file():
                (dst / name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / name / f, dst / name / f)
