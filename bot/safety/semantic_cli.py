"""`solace safety train-semantic` and the semantic layer as the other `solace safety` commands
load it (kept apart from `bot.safety.cli` so the layer stays one self-contained piece)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from bot.safety.semantic import SemanticScreen

CASES_V2 = Path("tests/safety_cases/v2")
CASES_V3 = Path("tests/safety_cases/v3")
SPENT = (CASES_V2, CASES_V3)
# The threshold pool: v2 validation, the v2 held-out set (spent since it was scored once) and
# the spent v3 set (its pool half: `bot.safety.semantic_data.v3_half`; the other half is
# trained on); each file is a source of its own (bot.safety.semantic_thresholds). Named one by
# one: no held-out folder (v4/) is ever globbed.
VALIDATION_POOL = (
    CASES_V2 / "validation.jsonl",
    CASES_V2 / "heldout.jsonl",
    CASES_V3 / "heldout.jsonl",
)
CONVERSATION_POOL = (
    CASES_V2 / "validation_conversations.jsonl",
    CASES_V2 / "heldout_conversations.jsonl",
    CASES_V3 / "heldout_conversations.jsonl",
)


def is_spent(path: Path) -> bool:
    """True for the spent held-out files (v2 and v3, scored once each; the only held-out files
    thresholds may use)."""
    try:
        return path.resolve().parent in {d.resolve() for d in SPENT} and path.name.startswith(
            "heldout"
        )
    except OSError:
        return False


def semantic_or_none() -> SemanticScreen | None:
    """The semantic layer, or None with the reason on stderr (the rules still run)."""
    from bot.safety.semantic import build_semantic

    semantic, status = build_semantic(log=False)
    if semantic is None:
        click.echo(f"semantic layer {status}; screening with the rules only", err=True)
    return semantic


@click.command("train-semantic")
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/safety"))
@click.option(
    "--validation",
    type=click.Path(exists=True, path_type=Path),
    multiple=True,
    default=VALIDATION_POOL,
    show_default=True,
    help="Case files for choosing thresholds only, each a source of its own (repeatable).",
)
@click.option(
    "--conversations",
    type=click.Path(exists=True, path_type=Path),
    multiple=True,
    default=CONVERSATION_POOL,
    show_default=True,
    help="Conversation cases for choosing the context thresholds only (repeatable).",
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Artifact path.")
@click.option(
    "--reuse-heads",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Keep the regression heads of this artifact (same data) and redo prototypes and thresholds.",
)
def train_semantic(
    data: Path,
    validation: tuple[Path, ...],
    conversations: tuple[Path, ...],
    out: Path | None,
    reuse_heads: Path | None,
) -> None:
    """Train the semantic layer's classifier and choose its thresholds (needs SOLACE_DATA_DIR).

    Writes bot/safety/data/semantic_classifier.json (plain JSON). Embeddings are cached under
    ~/.cache/solace/semantic/. See data/safety/README.md for what it is trained on. The current
    held-out files are refused: only the spent v2 and v3 held-out sets may choose thresholds.
    """
    from bot.safety.semantic import DEFAULT_CLASSIFIER_PATH, DEFAULT_ENCODER_PATH, SemanticError
    from bot.safety.semantic_train import train

    refused = [p for p in (*validation, *conversations) if "heldout" in p.name and not is_spent(p)]
    if refused:
        raise click.ClickException(
            f"{refused[0]}: held-out files are never used for training or thresholds "
            f"(only the spent {CASES_V2}/heldout* and {CASES_V3}/heldout* may choose thresholds)"
        )
    cache = Path.home() / ".cache" / "solace" / "semantic" / "emb.npz"
    try:
        reuse = None if reuse_heads is None else json.loads(reuse_heads.read_text("utf-8"))
        artifact = train(
            data,
            list(validation),
            list(conversations),
            DEFAULT_ENCODER_PATH,
            out or DEFAULT_CLASSIFIER_PATH,
            cache,
            reuse,
        )
    except (SemanticError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        json.dumps({k: artifact["meta"][k] for k in ("data", "fit", "validation_at_thresholds")})
    )
    click.echo(json.dumps(artifact["thresholds"]))
