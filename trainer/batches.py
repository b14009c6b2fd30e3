"""Dialogues in, batches out: loading both splits, tokenising them into samples (with the fixed
eval subset), the seeded length-grouped batch order of each epoch, and padding a batch."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.runfiles import write_json
from trainer.data import (
    DataError,
    DataStats,
    Sample,
    WindowBuilder,
    check_strategy_labels,
    warm_representation_cache,
)
from trainer.served import ServedWindowBuilder, warm_served_cache

if TYPE_CHECKING:
    from dialogue.types import Dialogue
    from trainer.config import TrainConfig

# Batches are formed from length-sorted groups of this many batches (like transformers'
# group_by_length): little padding, yet a random order from step to step.
LENGTH_GROUP_BATCHES = 50
PAD_MULTIPLE = 8


def load_dialogues(cfg: TrainConfig) -> tuple[list[Any], list[Any]]:
    """Training and held-out dialogues; DataError with the spec when either is empty, or when
    a strategy-conditioned run's data has no strategy labels."""
    from dialogue.datasets import load_spec
    from dialogue.splits import stratified_split

    def load(spec: str) -> list[Any]:
        try:
            dialogues = load_spec(spec).dialogues
        except (ValueError, OSError) as exc:  # DatasetError is a ValueError
            raise DataError(f"dataset {spec!r}: {exc}") from exc
        if not dialogues:
            raise DataError(f"dataset {spec!r} holds no dialogues")
        return dialogues

    train = load(cfg.dataset)
    check_strategy_labels(train, cfg.dataset, cfg)
    if cfg.eval_dataset:
        evals = load(cfg.eval_dataset)
        check_strategy_labels(evals, cfg.eval_dataset, cfg)
    else:
        train, evals = stratified_split(train, test_size=cfg.eval_fraction, seed=cfg.seed)
    if cfg.max_train_dialogues:
        train = train[: cfg.max_train_dialogues]
    return train, evals


def epoch_batches(samples: list[Sample], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """This epoch's batches (sample indices): length-grouped, order fixed by (seed, epoch)."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(samples)))
    rng.shuffle(order)
    group = batch_size * LENGTH_GROUP_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start : start + group], key=lambda i: -len(samples[i].input_ids))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(samples: list[Sample], pad_id: int, device: Any) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels (-100 on padding)."""
    import torch

    width = max(len(s.input_ids) for s in samples)
    width = -(-width // PAD_MULTIPLE) * PAD_MULTIPLE
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, s in enumerate(samples):
        n = len(s.input_ids)
        ids[row, :n] = torch.tensor(s.input_ids)
        labels[row, :n] = torch.tensor(s.labels)
        mask[row, :n] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def build_samples(
    dialogues: Sequence[Dialogue], tokenizer: Any, cfg: TrainConfig
) -> tuple[list[Sample], DataStats]:
    """Samples and statistics for these dialogues; DataError if nothing usable comes out."""
    stats = DataStats()
    if cfg.windows == "served":
        builder: WindowBuilder = ServedWindowBuilder(tokenizer, cfg)
        warm_served_cache(dialogues, builder)  # type: ignore[arg-type]
    else:
        builder = WindowBuilder(tokenizer, cfg)
        warm_representation_cache(dialogues, cfg.context_representation)
    samples = builder.build(dialogues, stats)
    if not samples:
        if stats.skipped_long_exchanges:
            raise DataError(
                f"max_seq_len = {cfg.max_seq_len} is shorter than every exchange (system prompt "
                f"{stats.system_prompt_tokens} tokens, longest exchange "
                f"{stats.longest_exchange_tokens}); raise max_seq_len"
            )
        raise DataError("no training samples: the dialogues have no user→assistant exchange")
    return samples, stats


def prepare_data(
    cfg: TrainConfig,
    tokenizer: Any,
    train_dialogues: list[Any],
    eval_dialogues: list[Any],
    run_dir: Path,
    echo: Callable[[str], None],
) -> tuple[list[Sample], list[Sample], dict[str, Any]]:
    """Tokenised windows for both splits, a fixed eval subset, stats printed and saved."""
    train_samples, train_stats = build_samples(train_dialogues, tokenizer, cfg)
    if len(eval_dialogues) > cfg.eval_max_samples:  # each dialogue gives at least one sample
        rng = random.Random(cfg.seed)
        picked = sorted(rng.sample(range(len(eval_dialogues)), cfg.eval_max_samples))
        eval_dialogues = [eval_dialogues[i] for i in picked]
    eval_samples, eval_stats = build_samples(eval_dialogues, tokenizer, cfg)
    if len(eval_samples) > cfg.eval_max_samples:
        picked = sorted(
            random.Random(cfg.seed).sample(range(len(eval_samples)), cfg.eval_max_samples)
        )
        eval_samples = [eval_samples[i] for i in picked]
    stats = {
        "train": train_stats.as_dict(),
        "eval": eval_stats.as_dict(),
        "eval_samples_used": len(eval_samples),
        "eval_tokens_used": sum(len(s.input_ids) for s in eval_samples),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "data_stats.json", stats)
    for split, s in (("train", train_stats), ("eval", eval_stats)):
        echo(
            f"{split}: {s.dialogues} dialogues → {s.samples} samples, {s.tokens} tokens, "
            f"{s.target_tokens} target tokens ({s.target_turns} target turns; skipped "
            f"{s.skipped_long_exchanges} over-long exchanges)"
        )
    return train_samples, eval_samples, stats
