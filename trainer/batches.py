"""Dialogues in, batches out: loading both splits, the seeded length-grouped batch order of each
epoch, and padding a batch into tensors."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from trainer.data import DataError, Sample, check_strategy_labels

if TYPE_CHECKING:
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
