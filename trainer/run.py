"""The state of one training run shared by the loop and the checkpoints: `Run` and its error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.config import TrainConfig
from trainer.data import Sample


class TrainError(RuntimeError):
    """The run cannot start or continue; the message says what to do."""


@dataclass
class Run:
    """Everything a step needs, built once."""

    cfg: TrainConfig
    accelerator: Any
    net: Any  # TargetOnlyLM, possibly wrapped by DDP / DeepSpeed
    optimizer: Any
    scheduler: Any
    train: list[Sample]
    evals: list[Sample]
    pad_id: int
    total_steps: int
    stop: dict[str, bool]
    local_tokens: int = 0  # tokens this process trained on since it started


def peft_model(run: Run) -> Any:
    """The peft model inside the (possibly wrapped) loss module."""
    return run.accelerator.unwrap_model(run.net).model
