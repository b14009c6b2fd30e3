"""`solace safety`: test a deployment's crisis screen, reply guard and crisis replies offline."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.safety.semantic_cli import train_semantic

if TYPE_CHECKING:
    from bot.safety.layer import SafetyLayer

DEFAULT_CASES = Path("tests/safety_cases")


@click.group()
def safety() -> None:
    """Crisis screen and reply guard tools for operators and audits (offline, no model)."""


@safety.command()
@click.option(
    "--level", is_flag=True, help="Also print the level (none/concern/crisis) and subject."
)
@click.option("--rules-only", is_flag=True, help="Skip the semantic layer (the rules alone).")
def screen(level: bool, rules_only: bool) -> None:
    """Screen one message per line of stdin; print one JSON object per line.

    Each line of output is {"crisis": bool, "category": ..., "matched": ...}; "matched" names
    the rule that fired (e.g. "suicide/kill_self") or the layer ("semantic:suicide"), never the
    words of the message. Each line is screened alone (no conversation context).
    """
    from bot.safety.context import LayeredScreen
    from bot.safety.semantic_cli import semantic_or_none

    layered = LayeredScreen(None if rules_only else semantic_or_none())
    for line in sys.stdin:
        result = layered.screen(line.rstrip("\n")).result
        row: dict[str, object] = {
            "crisis": result.crisis,
            "category": result.category,
            "matched": result.matched,
        }
        if level:
            row.update(level=result.level, subject=result.subject)
        click.echo(json.dumps(row))


@safety.command()
@click.option("--final/--partial", default=True, help="Check as a complete reply (default).")
@click.option(
    "--data",
    "data_spec",
    help="Check a data set's supporter turns instead of stdin (e.g. esconv:all, a path) and "
    "print how many the guard would withdraw, per reason.",
)
@click.option(
    "--show-hits", is_flag=True, help="With --data: print each withdrawn turn (reason, text)."
)
def guard(final: bool, data_spec: str | None, show_hits: bool) -> None:
    """Check one model reply per line of stdin; print {"ok": bool, "reason": ...} per line.

    With --data, the data set's supporter turns are checked as whole replies instead (the
    false-positive rate on human supporter text; read the hits: human supporters do say "I'm a
    mom myself", which a bot must not).
    """
    from bot.safety.layer import SafetyLayer

    layer = SafetyLayer()
    if data_spec is not None:
        _guard_data_set(layer, data_spec, show_hits)
        return
    for line in sys.stdin:
        verdict = layer.guard(line.rstrip("\n"), final=final)
        click.echo(json.dumps({"ok": verdict.ok, "reason": verdict.reason}))


def _guard_data_set(layer: SafetyLayer, spec: str, show_hits: bool) -> None:
    from dialogue.datasets import DatasetError, load_spec

    try:
        dialogues = load_spec(spec).dialogues
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from exc
    turns = [t.text for d in dialogues for t in d.turns if t.role == "assistant"]
    by_reason: Counter[str] = Counter()
    for text in turns:
        verdict = layer.guard(text, final=True)
        if not verdict.ok:
            by_reason[verdict.reason or "unspecified"] += 1
            if show_hits:
                click.echo(f"{verdict.reason}\t{' '.join(text.split())}")
    withdrawn = sum(by_reason.values())
    summary = {
        "data": spec,
        "supporter_turns": len(turns),
        "withdrawn": withdrawn,
        "rate": round(withdrawn / len(turns), 5) if turns else 0.0,
        "by_reason": dict(by_reason.most_common()),
    }
    click.echo(json.dumps(summary))


@safety.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--rules-only", is_flag=True, help="Score the rules alone (the baseline).")
@click.option(
    "--esconv", is_flag=True, help="Also the flag rate on ESConv seeker turns (SOLACE_DATA_DIR)."
)
@click.option(
    "--show-misses",
    is_flag=True,
    help="List missed cases and false alarms (with text; refused on the v2 held-out files).",
)
@click.option("--guard", "guard_only", is_flag=True, help="PATHS are reply-guard case files.")
def evaluate(
    paths: tuple[Path, ...], rules_only: bool, esconv: bool, show_misses: bool, guard_only: bool
) -> None:
    """Figures of the crisis screen (rules + semantic layer) and of the reply guard.

    Screen: recall per category and tier with 95% Wilson intervals, FPR and flag rate on
    controls and ordinary distress, conversations turn by turn (tests/safety_cases/v2/README.md
    has the convention). Guard: recall and FPR on whole and streamed replies. PATHS are JSON
    Lines files or directories (crisis cases, or guard cases with --guard), each reported apart.
    Default: tests/safety_cases (dev, and the older heldout.jsonl apart), the v2 validation
    files, and tests/safety_cases/guard. The v2 held-out files are scored only when named.
    """
    from bot.safety.evaluate import GUARD_DIR, dev_and_heldout
    from bot.safety.figures import case_files

    if paths:
        screen_groups = {} if guard_only else {p.name: case_files([p]) for p in paths}
        guard_groups = {"guard cases": list(paths)} if guard_only else {}
    else:
        if not DEFAULT_CASES.is_dir():
            raise click.ClickException(f"{DEFAULT_CASES} not found: pass case files as arguments")
        screen_groups = {} if guard_only else dev_and_heldout(DEFAULT_CASES)
        if not guard_only:
            screen_groups["validation"] = sorted((DEFAULT_CASES / "v2").glob("validation*.jsonl"))
        guard_dir = DEFAULT_CASES / GUARD_DIR
        guard_groups = dev_and_heldout(guard_dir) if guard_dir.is_dir() else {}
    if show_misses and any("heldout" in f.name for g in screen_groups.values() for f in g):
        raise click.ClickException("--show-misses is refused on held-out files: never read them")
    try:
        if screen_groups or esconv:
            _echo_screen_figures(screen_groups, rules_only, esconv, show_misses)
        for title, group in guard_groups.items():
            _echo_guard_figures(f"guard, {title}", group, show_misses)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def _echo_screen_figures(
    groups: dict[str, list[Path]], rules_only: bool, esconv: bool, show_misses: bool
) -> None:
    from bot.safety.context import LayeredScreen
    from bot.safety.figures import esconv_lines, evaluate_files
    from bot.safety.semantic_cli import semantic_or_none
    from dialogue.datasets import DatasetError

    layered = LayeredScreen(None if rules_only else semantic_or_none())
    for title, files in groups.items():
        click.echo(
            evaluate_files(layered, files, title=f"screen, {title}", show_misses=show_misses)
        )
    if esconv:
        try:
            click.echo("\n".join(esconv_lines(layered)))
        except DatasetError as exc:
            raise click.ClickException(str(exc)) from exc


def _echo_guard_figures(title: str, files: list[Path], show_misses: bool) -> None:
    from bot.safety.evaluate import evaluate_guard, format_guard_report, load_guard_cases

    report = evaluate_guard(load_guard_cases(files))
    click.echo(format_guard_report(report, title))
    if show_misses:
        for case in report.misses:
            click.echo(f"  MISS  [{case.reason}/{case.style}] {case.text}")
        for case, reason in report.false_alarms:
            click.echo(f"  FALSE [{reason}/{case.style}] {case.text}")


@safety.command()
@click.argument(
    "category",
    type=click.Choice(["suicide", "self_harm", "abuse", "harm_to_others", "medical_emergency"]),
)
@click.option("--country", help="ISO code the user set with /country, e.g. GB.")
@click.option("--language-code", help="A platform language hint, e.g. de or pt-br.")
@click.option("--other", is_flag=True, help="Word it for someone worried about another person.")
def reply(category: str, country: str | None, language_code: str | None, other: bool) -> None:
    """Print the crisis reply a user would get (to review wording and numbers)."""
    from bot.safety.layer import SafetyLayer
    from bot.safety.screen import ScreenResult

    result = ScreenResult(
        crisis=True,
        category=category,
        level="crisis",
        matched="cli",
        subject="other" if other else "self",
    )
    click.echo(SafetyLayer().crisis_reply(result, country, language_code))


@safety.command()
def hotlines() -> None:
    """List the countries in the hotline table with their emergency numbers."""
    from bot.safety.resources import load_hotlines

    table = load_hotlines()
    for code, info in sorted(table.countries.items()):
        click.echo(f"{code}  {info.emergency:<40} {len(info.lines)} line(s)  {info.name}")


safety.add_command(train_semantic)
