"""`solace eval ...`: generate, metrics, judge, toxicity, lengths and report.

Every command takes `--config configs/eval/X.toml` and repeatable `--set section.key=value`
overrides; explicit flags win over both. Heavy libraries load inside the command bodies.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click

from bot.config.options import db_option
from common.cli import set_option as kit_set_option
from evaluation.config import EvalConfig, load_config

logger = logging.getLogger(__name__)

config_option = click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False),
    help="An eval TOML file (configs/eval/*.toml).",
)  # fmt: skip
set_option = kit_set_option("generate.dialogues=5")


def _config(path: str | None, overrides: tuple[str, ...], flags: dict[str, Any]) -> EvalConfig:
    extra = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    try:
        return load_config(path, [*overrides, *extra])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("eval")
def eval_group() -> None:
    """Evaluate a model the way the papers do: generate, score, judge, audit, report."""


@eval_group.command("generate")
@config_option
@set_option
@click.option(
    "--model",
    help="GGUF path (local), served model name (with --openai-base-url), or a training run "
    "directory (runs/<name>: generated through transformers, e.g. an adaption prompt).",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "llama-cpp", "transformers", "openai"]),
    help="Which backend generates (default auto: chosen from --model / --openai-base-url).",
)
@click.option("--lora", help="LoRA adapter GGUF applied on top of --model.")
@click.option("--openai-base-url", help="Generate through an OpenAI-compatible server.")
@click.option("--data", help="Data spec: esconv:test, extes:test or a file path.")
@click.option("--dialogues", type=int, help="Number of dialogues in the fixed subset.")
@click.option(
    "--representation",
    "context_representation",
    type=click.Choice(["raw", "keypos", "nostopwords", "hybrid"]),
    help="Context representation of the history (generate.context_representation).",
)
@click.option("--strategies/--no-strategies", default=None, help="[Strategy]-prefixed replies.")
@click.option(
    "--mode",
    type=click.Choice(["turn", "dialogue"]),
    help="turn (default) or dialogue-level replay.",
)
@click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False), help="Run directory."
)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def generate_cmd(
    config_path: str | None, overrides: tuple[str, ...], out: str, progress: bool, **flags: Any
) -> None:
    """Generate a reply for every supporter turn; resumes where a previous run stopped."""
    from bot.errors import SolaceError
    from evaluation.generate import run_generation

    cfg = _config(config_path, overrides, {f"generate.{k}": v for k, v in flags.items()})
    try:
        counts = run_generation(cfg, out, progress=progress)
    except (SolaceError, ValueError, OSError) as exc:
        raise click.ClickException(f"generation stopped: {exc}") from exc
    click.echo(f"{out}: {counts['done']} generated, {counts['failed']} failed, "
               f"{counts['skipped']} already done, {counts['targets']} targets")  # fmt: skip
    if counts["failed"]:
        click.echo(
            "failed turns keep their error in generations.jsonl; rerun to retry them", err=True
        )


def _ppl_entry(
    run: Path, cfg: EvalConfig, rows: list[dict[str, Any]], model: str | None, lora: str | None
) -> dict[str, Any]:
    from evaluation.ppl import ScoringModel, corpus_perplexity
    from evaluation.runs import read_manifest

    info = read_manifest(run).get("model", {})
    if info.get("base_url") and not model:
        return {
            "value": None,
            "label": "PPL",
            "error": "run used a remote server; pass --model GGUF",
        }
    path = model or info.get("path")
    if not path:
        return {
            "value": None,
            "label": "PPL",
            "error": "no model recorded in manifest; pass --model",
        }
    lora = lora if model else (lora or info.get("lora"))
    n_ctx = info.get("n_ctx") or cfg.generate.context_tokens
    scorer: Any
    if Path(path).is_dir() and (model or info.get("backend") == "transformers"):
        from evaluation.hf_backend import TransformersScorer

        scorer = TransformersScorer(path, n_ctx=n_ctx, threads=cfg.generate.threads)
    else:
        scorer = ScoringModel(path, lora, n_ctx=n_ctx, n_threads=cfg.generate.threads)
    return corpus_perplexity(rows, scorer)


def _write_metrics(run: Path, report: dict[str, Any]) -> None:
    from common.runfiles import write_json
    from evaluation.report import markdown_table

    write_json(run / "metrics.json", report)
    items = [(k, v) for k, v in report["metrics"].items() if isinstance(v, dict)]
    with open(run / "metrics.csv", "w", encoding="utf-8") as fh:
        fh.write("metric,label,value,implementation\n")
        for key, v in items:
            impl = str(v.get("implementation", v.get("error", ""))).replace('"', "'")
            fh.write(f'{key},"{v.get("label", key)}",{v.get("value")},"{impl}"\n')
    rows = [[v.get("label", k), "—" if v.get("value") is None else f"{v['value']:.4f}",
             str(v.get("model") or v.get("embeddings") or v.get("wordnet") or v.get("error") or "")]
            for k, v in items]  # fmt: skip
    (run / "metrics.md").write_text(
        markdown_table(["Metric", "Value", "Model / data"], rows) + "\n"
    )


@eval_group.command("metrics")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@config_option
@set_option
@click.option("--ppl/--no-ppl", default=None, help="Compute reference perplexity (needs the GGUF).")
@click.option("--model", help="GGUF or training run dir for perplexity (default: the run's model).")
@click.option("--lora", help="LoRA GGUF for perplexity (default: the run's adapter).")
@click.option("--max-dialogues", type=int, help="Only the first N dialogues of the subset.")
def metrics_cmd(
    run: str,
    config_path: str | None,
    overrides: tuple[str, ...],
    ppl: bool | None,
    model: str | None,
    lora: str | None,
    max_dialogues: int | None,
) -> None:
    """Score a run: PPL, BLEU-2/4, ROUGE-L, METEOR, BERTScore, Extrema, Distinct-n, lengths."""
    from common.runfiles import now_iso
    from evaluation.metrics import compute_metrics
    from evaluation.runs import RunFileError, read_manifest, read_rows

    cfg = _config(config_path, overrides, {"metrics.ppl": ppl})
    run_dir = Path(run)
    try:
        loaded = read_rows(run_dir, max_dialogues=max_dialogues)
    except RunFileError as exc:
        raise click.ClickException(str(exc)) from exc
    for problem in loaded.problems[:10]:
        click.echo(f"skipped: {problem}", err=True)
    if not loaded.rows:
        raise click.ClickException(f"{run}: no usable rows ({len(loaded.problems)} malformed)")
    start = time.perf_counter()
    try:
        results = compute_metrics(loaded.rows, cfg.metrics)
        if cfg.metrics.ppl and "ppl" not in cfg.metrics.skip:
            results["ppl"] = _ppl_entry(run_dir, cfg, loaded.rows, model, lora)
    except (ValueError, RuntimeError, OSError) as exc:
        raise click.ClickException(f"metrics failed: {exc}") from exc
    manifest = read_manifest(run_dir)
    report = {
        "run": str(run_dir), "computed": now_iso(), "seconds": round(time.perf_counter() - start, 2),
        "data": manifest.get("data", {}).get("spec"), "model": manifest.get("model"),
        "rows": len(loaded.rows), "dialogues": len({r["dialogue_id"] for r in loaded.rows}),
        "rows_skipped": len(loaded.problems), "max_dialogues": max_dialogues, "metrics": results,
    }  # fmt: skip
    _write_metrics(run_dir, report)
    for key, entry in results.items():
        value = entry.get("value")
        shown = "refused" if value is None else f"{value:.3f}"
        source = entry.get("model") or entry.get("embeddings") or entry.get("wordnet") or ""
        click.echo(f"{entry.get('label', key):40s} {shown:>10s}  {source}")
        if entry.get("note"):
            click.echo(f"{'':40s} note: {entry['note']}")


@eval_group.command("judge")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@config_option
@set_option
@click.option(
    "--against", type=click.Path(exists=True, file_okay=False), help="Pairwise vs this run."
)
@click.option("--base-url", help="OpenAI-compatible endpoint of the judge.")
@click.option("--model", help="Judge model name.")
@click.option("--samples", type=int, help="Judgements per dialogue (mean and spread).")
def judge_cmd(
    run: str, config_path: str | None, overrides: tuple[str, ...], against: str | None, **flags: Any
) -> None:
    """Rate each dialogue with an LLM judge (Engagement, Comforting, Appropriateness, Suggestion)."""
    import asyncio

    from evaluation.judge_run import judge_pairwise, judge_run
    from scoring.judge import JudgeError

    cfg = _config(config_path, overrides, {f"judge.{k}": v for k, v in flags.items()})
    try:
        if against:
            summary = asyncio.run(judge_pairwise(run, against, cfg.judge))
            click.echo(
                json.dumps({k: summary[k] for k in ("verdicts", "length_bias", "spend")}, indent=2)
            )
        else:
            summary = asyncio.run(judge_run(run, cfg.judge))
            click.echo(
                json.dumps(
                    {k: summary[k] for k in ("judge", "scored", "dialogues", "criteria", "spend")},
                    indent=2,
                )
            )
    except JudgeError as exc:
        raise click.ClickException(str(exc)) from exc


def _db_texts(db_path: str) -> dict[str, list[str]]:
    """Bot replies and user messages from a bot database, read-only."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{Path(db_path).resolve()}?mode=ro", uri=True)
        rows = con.execute("SELECT role, text FROM turns").fetchall()
        con.close()
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot read turns from {db_path}: {exc}") from exc
    return {f"bot_db:{role}": [t for r, t in rows if r == role] for role in ("assistant", "user")}


@eval_group.command("toxicity")
@click.argument("run", required=False, type=click.Path(exists=True, file_okay=False))
@config_option
@set_option
@click.option("--data", "data_spec", help="Score a data set instead (e.g. esconv:test).")
@click.option(
    "--db", "db_path", type=click.Path(exists=True, dir_okay=False), help="A bot SQLite database."
)
@click.option("--scorer", type=click.Choice(["auto", "perspective", "detoxify", "lexicon"]))
@click.option(
    "--out", type=click.Path(dir_okay=False), help="JSON output (default: RUN/toxicity.json)."
)
@click.option("--max-dialogues", type=int, help="Only the first N dialogues of the subset.")
def toxicity_cmd(
    run: str | None,
    config_path: str | None,
    overrides: tuple[str, ...],
    data_spec: str | None,
    db_path: str | None,
    scorer: str | None,
    out: str | None,
    max_dialogues: int | None,
) -> None:
    """Mean toxicity per attribute (ExTES Table 7) for a run, a data set or the bot's database."""
    from common.runfiles import write_json
    from evaluation.runs import read_rows
    from scoring.toxicity import ToxicityError, build_scorer, summarize

    if sum(x is not None for x in (run, data_spec, db_path)) != 1:
        raise click.UsageError("give exactly one of RUN, --data or --db")
    cfg = _config(config_path, overrides, {"toxicity.scorer": scorer})
    sets: dict[str, list[str]] = {}
    if run:
        rows = read_rows(run, max_dialogues=max_dialogues).rows
        sets = {
            "generated": [r["generated"] for r in rows],
            "reference": [r["reference"] for r in rows],
        }
    elif data_spec:
        from dialogue.datasets import load_spec

        dialogues = load_spec(data_spec).dialogues
        for role, name in (("user", "seeker"), ("assistant", "supporter")):
            sets[f"{data_spec}:{name}"] = [
                t.text for d in dialogues for t in d.turns if t.role == role
            ]
    else:
        sets = _db_texts(str(db_path))
    try:
        tox = build_scorer(cfg.toxicity)
        summaries = {name: summarize(tox, texts) for name, texts in sets.items()}
    except ToxicityError as exc:
        raise click.ClickException(str(exc)) from exc
    target = Path(out) if out else (Path(run) / "toxicity.json" if run else None)
    if target:
        write_json(target, {"sets": summaries, "max_dialogues": max_dialogues})
    for name, block in summaries.items():
        means = " ".join(
            f"{a}={v['mean']:.4f}" for a, v in block["attributes"].items() if v["mean"] is not None
        )
        click.echo(f"{name} (n={block['utterances']}, scorer: {block['scorer']}): {means}")


@eval_group.command("lengths")
@click.option("--data", "data_spec", default="esconv:test", show_default=True, help="Data spec.")
@click.option(
    "--role", type=click.Choice(["all", "user", "assistant"]), default="all", show_default=True
)
def lengths_cmd(data_spec: str, role: str) -> None:
    """Average tokenized utterance length per context representation (papers' Tables 5/7/9/11)."""
    from dialogue.context import represent
    from dialogue.datasets import load_spec
    from evaluation.metrics import TOKENIZER_NAME, mean_length, tokenize

    texts = [
        t.text for d in load_spec(data_spec).dialogues for t in d.turns if role in ("all", t.role)
    ]
    click.echo(f"{data_spec} ({role}, {len(texts)} utterances; {TOKENIZER_NAME})")
    for rep in ("raw", "keypos", "nostopwords"):
        click.echo(f"{rep:12s} {mean_length([tokenize(t) for t in represent(texts, rep)]):.2f}")


@eval_group.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--title", default="Solace evaluation", show_default=True)
@click.option("--note", "notes", multiple=True, help="A note printed at the top (repeatable).")
def report_cmd(runs: tuple[str, ...], out: str, title: str, notes: tuple[str, ...]) -> None:
    """One self-contained HTML page (tables + charts) and a Markdown summary for RUN..."""
    from evaluation.report import write_report
    from evaluation.runs import RunFileError

    try:
        paths = write_report(runs, out, title, notes)
    except (RunFileError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")


@eval_group.command("human")
@click.argument("study")
@db_option
@click.option("--json", "as_json", is_flag=True, help="The numbers as JSON instead of tables.")
def human_cmd(study: str, db: Path | None, as_json: bool) -> None:
    """Human-evaluation results of STUDY (made in `solace web`): win/tie/loss per aspect and
    model pair with bootstrap intervals (Table 9 layout), or 0-3 ratings with Fleiss' kappa
    (Table 4 layout), beside the ExTES paper's figures."""
    from bot.config import load_settings
    from bot.errors import SolaceError
    from bot.web.results import markdown, study_results
    from bot.web.store import connection, migrate_web
    from bot.web.studies import get_study

    try:
        path = db.expanduser() if db else load_settings().memory.db_path.expanduser()
        if not path.is_file():
            raise click.ClickException(f"{path}: no such database")
        migrate_web(path)
        with connection(path) as conn:
            found = get_study(conn, study)
            if found is None:
                raise click.ClickException(f"no study named {study!r} in {path}")
            results = study_results(conn, found)
    except SolaceError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        results["study"] = {"slug": found.slug, "kind": found.kind, "title": found.title,
                            "models": found.model_names}  # fmt: skip
        click.echo(json.dumps(results, indent=2, default=str))
        return
    click.echo(markdown(results), nl=False)
