"""`solace safety`: test a deployment's crisis screen, reply guard and crisis replies offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

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
    from bot.safety_context import LayeredScreen

    layered = LayeredScreen(None if rules_only else _semantic())
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


def _semantic():  # type: ignore[no-untyped-def]
    """The semantic layer, or None with the reason on stderr (the rules still run)."""
    from bot.safety_semantic import build_semantic

    semantic, status = build_semantic()
    if semantic is None:
        click.echo(f"semantic layer {status}; screening with the rules only", err=True)
    return semantic


@safety.command()
@click.option("--final/--partial", default=True, help="Check as a complete reply (default).")
def guard(final: bool) -> None:
    """Check one model reply per line of stdin; print {"ok": bool, "reason": ...} per line."""
    from bot.safety import SafetyLayer

    layer = SafetyLayer()
    for line in sys.stdin:
        verdict = layer.guard(line.rstrip("\n"), final=final)
        click.echo(json.dumps({"ok": verdict.ok, "reason": verdict.reason}))


@safety.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--rules-only", is_flag=True, help="Score the rules alone (the baseline).")
@click.option(
    "--esconv", is_flag=True, help="Also the flag rate on ESConv seeker turns (SOLACE_DATA_DIR)."
)
@click.option(
    "--show-misses",
    is_flag=True,
    help="List missed crises and false alarms (with text; never on held-out files).",
)
def evaluate(paths: tuple[Path, ...], rules_only: bool, esconv: bool, show_misses: bool) -> None:
    """Recall per category and tier with 95% Wilson intervals, FPR on controls and distress.

    PATHS are JSON Lines case files or directories (read recursively), in the v2 format
    (tests/safety_cases/v2/README.md) or the older dev format; each path is reported apart.
    Default: the dev files in tests/safety_cases and tests/safety_cases/v2/validation*.jsonl.
    The v2 held-out files are scored only when named.
    """
    from bot.safety_context import LayeredScreen
    from bot.safety_evaluate import esconv_lines, evaluate_files

    if paths:
        groups = [[p] for p in paths]
    else:
        if not DEFAULT_CASES.is_dir():
            raise click.ClickException(f"{DEFAULT_CASES} not found: pass case files as arguments")
        dev = [f for f in sorted(DEFAULT_CASES.glob("*.jsonl")) if f.name != "heldout.jsonl"]
        groups = [dev, sorted((DEFAULT_CASES / "v2").glob("validation*.jsonl"))]
    layered = LayeredScreen(None if rules_only else _semantic())
    from bot.safety_evaluate import case_files

    for group in groups:
        try:
            click.echo(evaluate_files(layered, case_files(group), show_misses=show_misses))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    if esconv:
        from dialogue.datasets import DatasetError

        try:
            click.echo("\n".join(esconv_lines(layered, Path("data/safety/esconv_labels.jsonl"))))
        except DatasetError as exc:
            raise click.ClickException(str(exc)) from exc


@safety.command("train-semantic")
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/safety"))
@click.option(
    "--validation",
    type=click.Path(path_type=Path),
    default=DEFAULT_CASES / "v2" / "validation.jsonl",
    help="Cases for choosing thresholds only.",
)
@click.option(
    "--conversations",
    type=click.Path(path_type=Path),
    default=DEFAULT_CASES / "v2" / "validation_conversations.jsonl",
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Artifact path.")
def train_semantic(data: Path, validation: Path, conversations: Path, out: Path | None) -> None:
    """Train the semantic layer's classifier and choose its thresholds (needs SOLACE_DATA_DIR).

    Writes bot/resources/semantic_classifier.json (plain JSON). Embeddings are cached under
    ~/.cache/solace/semantic/. See data/safety/README.md for what it is trained on.
    """
    from bot.safety_semantic import DEFAULT_CLASSIFIER_PATH, DEFAULT_ENCODER_PATH, SemanticError
    from bot.safety_semantic_train import train

    if "heldout" in validation.name or "heldout" in conversations.name:
        raise click.ClickException("held-out files are never used for training or thresholds")
    cache = Path.home() / ".cache" / "solace" / "semantic" / "emb.npz"
    try:
        artifact = train(
            data,
            validation,
            conversations,
            DEFAULT_ENCODER_PATH,
            out or DEFAULT_CLASSIFIER_PATH,
            cache,
        )
    except (SemanticError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        json.dumps({k: artifact["meta"][k] for k in ("data", "fit", "validation_at_thresholds")})
    )
    click.echo(json.dumps(artifact["thresholds"]))


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
    from bot.safety import SafetyLayer, ScreenResult

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
    from bot.safety_resources import load_hotlines

    table = load_hotlines()
    for code, info in sorted(table.countries.items()):
        click.echo(f"{code}  {info.emergency:<40} {len(info.lines)} line(s)  {info.name}")
