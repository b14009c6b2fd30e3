"""`solace eval report RUN...`: one self-contained HTML page and a Markdown summary.

Tables follow the papers' layout (one row per configuration: model × context representation;
columns PPL, B-2, B-4, R-L, METEOR, BERTScore P/R/F1, Extrema, D-1/2/3, length), then bar charts
per metric, length distributions, toxicity (the ExTES paper's Table 7 attributes) and judge
scores. Charts are matplotlib PNGs embedded as base64, so the page needs no other file.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.runs import read_manifest, read_rows

logger = logging.getLogger(__name__)

# (metrics.json key, column header) in the papers' order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("ppl", "PPL"), ("bleu_2", "B-2"), ("bleu_4", "B-4"), ("rouge_l", "R-L"),
    ("meteor", "METEOR"), ("bertscore_p", "BERTScore P"), ("bertscore_r", "BERTScore R"),
    ("bertscore_f1", "BERTScore F1"), ("extrema", "Extrema"), ("distinct_1", "D-1"),
    ("distinct_2", "D-2"), ("distinct_3", "D-3"), ("len_generated", "Avg len"),
    ("len_context", "Ctx utt len"),
)  # fmt: skip
LOWER_IS_BETTER = {"ppl"}
TOX_ATTRIBUTES = ("toxicity", "severe_toxicity", "identity_attack", "insult", "profanity", "threat")


@dataclass
class RunSummary:
    """Everything a report needs from one run directory."""

    path: Path
    label: str
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    toxicity: dict[str, Any]
    judge: dict[str, Any]
    rows: int
    dialogues: int
    generated_lengths: list[int] = field(default_factory=list)
    reference_lengths: list[int] = field(default_factory=list)


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg})") from exc
    return data if isinstance(data, dict) else {}


def run_label(manifest: dict[str, Any], path: Path) -> str:
    """ "<model>[ + LoRA] / <representation>", or the directory name."""
    model = manifest.get("model", {})
    gen = manifest.get("config", {}).get("generate", {})
    if not model:
        return path.name
    name = Path(
        str(model.get("path") or model.get("base_url") or model.get("backend", "model"))
    ).name
    name = name.replace(".gguf", "").replace("-Instruct.Q4_1", "-Instruct")
    lora = f" + {Path(model['lora']).parent.name or 'LoRA'}" if model.get("lora") else ""
    mode = " (dialogue-level)" if gen.get("mode") == "dialogue" else ""
    representation = gen.get("context_representation", gen.get("representation", "?"))
    return f"{name}{lora} / {representation}{mode}"


def load_run(path: str | Path) -> RunSummary:
    """Read a run's manifest, rows and whatever metric files exist."""
    from evaluation.metrics import tokenize

    path = Path(path)
    manifest = read_manifest(path)
    metrics = _load_json(path / "metrics.json")
    # a table scored on the first N dialogues only (runs stopped at different points)
    rows = read_rows(path, max_dialogues=metrics.get("max_dialogues")).rows
    return RunSummary(
        path=path, label=run_label(manifest, path), manifest=manifest,
        metrics=metrics, toxicity=_load_json(path / "toxicity.json"),
        judge=_load_json(path / "judge.json"), rows=len(rows),
        dialogues=len({r["dialogue_id"] for r in rows}),
        generated_lengths=[len(tokenize(r["generated"])) for r in rows],
        reference_lengths=[len(tokenize(r["reference"])) for r in rows],
    )  # fmt: skip


def metric_value(run: RunSummary, key: str) -> float | None:
    """A metric's value from metrics.json (None when absent or refused)."""
    entry = run.metrics.get("metrics", {}).get(key)
    value = entry.get("value") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, int | float) else None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def metrics_table(runs: Sequence[RunSummary]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main table (coverage included)."""
    header = ["Configuration", "Dialogues", "Turns"] + [h for _, h in COLUMNS]
    rows = [
        [r.label, str(r.dialogues), str(r.rows)] + [_fmt(metric_value(r, k)) for k, _ in COLUMNS]
        for r in runs
    ]
    return header, rows


def toxicity_table(runs: Sequence[RunSummary]) -> tuple[list[str], list[list[str]]]:
    """One row per scored text set (generated / reference / data set) per run."""
    header = ["Configuration", "Texts", "Scorer", "N"] + list(TOX_ATTRIBUTES)
    rows = []
    for r in runs:
        for name, block in r.toxicity.get("sets", {}).items():
            attrs = block.get("attributes", {})
            rows.append([r.label, name, block.get("scorer", "?"), str(block.get("utterances", 0))]
                        + [_fmt(attrs.get(a, {}).get("mean"), 4) for a in TOX_ATTRIBUTES])  # fmt: skip
    return header, rows


def judge_table(runs: Sequence[RunSummary]) -> tuple[list[str], list[list[str]]]:
    """Judge means (± spread over dialogues) per criterion."""
    crit = ("Engagement", "Comforting", "Appropriateness", "Suggestion")
    header = ["Configuration", "Judge", "Scored"] + list(crit)
    rows = []
    for r in runs:
        if not r.judge:
            continue
        c = r.judge.get("criteria", {})
        cells = [
            f"{_fmt(c.get(k, {}).get('mean'))} ± {_fmt(c.get(k, {}).get('std_over_dialogues'))}"
            for k in crit
        ]
        rows.append([r.label, r.judge.get("judge", {}).get("model", "?"),
                     f"{r.judge.get('scored', 0)}/{r.judge.get('dialogues', 0)}", *cells])  # fmt: skip
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def provenance_lines(runs: Sequence[RunSummary]) -> list[str]:
    """Which model, tokenizer and embeddings each metric used (from metrics.json)."""
    seen: dict[str, str] = {}
    for r in runs:
        for key, entry in r.metrics.get("metrics", {}).items():
            if not isinstance(entry, dict):
                continue
            bits = [entry.get("implementation", "")]
            for extra in ("model", "layer", "embeddings", "wordnet", "tokenizer", "note", "error"):
                if entry.get(extra) is not None:
                    bits.append(f"{extra}: {entry[extra]}")
            seen.setdefault(f"{entry.get('label', key)}", "; ".join(b for b in bits if b))
    return [f"- **{k}**: {v}" for k, v in seen.items()]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def charts(runs: Sequence[RunSummary]) -> list[tuple[str, str]]:
    """(title, base64 PNG) for each metric bar chart and the length distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: list[tuple[str, str]] = []
    labels = [r.label for r in runs]
    for key, title in COLUMNS:
        values = [metric_value(r, key) for r in runs]
        if all(v is None for v in values):
            continue
        fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(runs)), 3))
        ax.bar(range(len(runs)), [v or 0 for v in values], color="#5b8db8")
        ax.set_xticks(range(len(runs)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_title(title + (" (lower is better)" if key in LOWER_IS_BETTER else ""))
        out.append((title, _png(fig)))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    for r in runs:
        if r.generated_lengths:
            ax.hist(r.generated_lengths, bins=30, histtype="step", label=r.label)
    if runs and runs[0].reference_lengths:
        ax.hist(
            runs[0].reference_lengths, bins=30, histtype="stepfilled", alpha=0.25, label="reference"
        )
    ax.set_xlabel("tokens per reply (Treebank)")
    ax.legend(fontsize=6)
    out.append(("Reply length distribution", _png(fig)))
    plt.close(fig)
    return out


def render(runs: Sequence[RunSummary], title: str, notes: Sequence[str] = ()) -> tuple[str, str]:
    """(HTML, Markdown) for the runs."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    tables = {"Reference-based metrics": metrics_table(runs), "Toxicity (mean per utterance)": toxicity_table(runs),
              "LLM judge (0–5)": judge_table(runs)}  # fmt: skip
    tables = {k: v for k, v in tables.items() if v[1]}
    prov = provenance_lines(runs)
    env = Environment(
        loader=PackageLoader("evaluation", "templates"), autoescape=select_autoescape(["html"])
    )
    html = env.get_template("report.html").render(
        title=title, tables=tables, charts=charts(runs), provenance=prov, notes=list(notes),
        runs=[{"label": r.label, "path": str(r.path), "manifest": r.manifest} for r in runs],
    )  # fmt: skip
    md = [f"# {title}", ""]
    md += [f"> {n}" for n in notes] + ([""] if notes else [])
    for name, (header, rows) in tables.items():
        md += [f"## {name}", "", markdown_table(header, rows), ""]
    md += ["## What each number used", "", *prov, ""]
    return html, "\n".join(md)


def write_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    title: str = "Solace evaluation",
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Write report.html, report.md and metrics.csv into `out_dir`."""
    runs = [load_run(p) for p in run_dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html, md = render(runs, title, notes)
    (out / "report.html").write_text(html, encoding="utf-8")
    (out / "report.md").write_text(md, encoding="utf-8")
    header, rows = metrics_table(runs)
    with open(out / "metrics.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return {"html": out / "report.html", "markdown": out / "report.md", "csv": out / "metrics.csv"}
