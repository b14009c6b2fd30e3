"""Checkpoints of a run: save and restore exactly (weights, optimizer, schedule, RNG, data
position), the best eval step's weights for early stopping, and what --resume may change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.config import RESUMABLE_KEYS, TrainConfig
from trainer.outputs import (
    BEST_DIR,
    TrainState,
    checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
    state_dict,
    write_history,
)
from trainer.run import Run, TrainError, peft_model


def save(run: Run, state: TrainState, run_dir: Path) -> None:
    """Checkpoint: trainable weights, optimizer, scheduler, RNG and data position."""
    run.accelerator.wait_for_everyone()
    if not run.accelerator.is_main_process:
        return
    payload = {
        "trainable": trainable_state(run),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": rng_state(),
        "state": state_dict(state),
        "config": run.cfg.model_dump(mode="json"),
        "num_processes": run.accelerator.num_processes,
    }
    write_history(run_dir, state.history)
    save_checkpoint(run_dir, payload, run.cfg.keep_checkpoints)


def trainable_state(run: Run) -> dict[str, Any]:
    """A CPU copy of the trainable weights."""
    model = peft_model(run)
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_best(run: Run, state: TrainState) -> None:
    """Keep the weights of the best eval so far (early stopping writes the outputs from them)."""
    import torch

    run.accelerator.wait_for_everyone()
    if not run.accelerator.is_main_process:
        return
    best = run.cfg.run_dir / "checkpoints" / BEST_DIR
    best.mkdir(parents=True, exist_ok=True)
    tmp = best / "weights.pt.tmp"
    torch.save(
        {"step": state.step, "eval_loss": state.best_eval_loss, "trainable": trainable_state(run)},
        tmp,
    )
    tmp.replace(best / "weights.pt")


def load_weights(run: Run, trainable: dict[str, Any]) -> None:
    """Copy saved trainable weights into the model."""
    import torch

    params = dict(peft_model(run).named_parameters())
    with torch.no_grad():
        for name, value in trainable.items():
            params[name].copy_(value)


def restore_best(run: Run, state: TrainState, echo: Callable[[str], None]) -> None:
    """Load the best eval step's weights before the outputs are written (early stopping)."""
    import torch

    path = run.cfg.run_dir / "checkpoints" / BEST_DIR / "weights.pt"
    if run.cfg.early_stopping_patience is None or not path.is_file():
        return
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload["step"] != state.step:
        load_weights(run, payload["trainable"])
        echo(f"outputs are the best eval step's weights: step {payload['step']}, eval loss "
             f"{payload['eval_loss']:.4f}")  # fmt: skip


def restore(run: Run, path: Path) -> TrainState:
    """Load a checkpoint into the run; refuse one made with a different setup."""
    import torch

    payload = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    # A key the checkpoint predates had its default value then.
    defaults = TrainConfig(name="-", base_model="-").model_dump(mode="json")
    old = {**defaults, **payload["config"]}
    new = run.cfg.model_dump(mode="json")
    if old["method"] != new["method"]:
        raise TrainError(
            f"--resume: {path} was trained with method = {old['method']!r}, the config says "
            f"{new['method']!r}; a checkpoint cannot change method. Train the new method in "
            "another output_dir (--set output_dir=...)"
        )
    changed = sorted(k for k in new if k not in RESUMABLE_KEYS and old.get(k) != new[k])
    # Another number of processes may resume it with the same global batch: the data position
    # and the LR schedule count optimizer steps of batch_size x grad_accum x processes windows.
    was = payload.get("num_processes", 1) * old["batch_size"] * old["grad_accum"]
    now = run.accelerator.num_processes * new["batch_size"] * new["grad_accum"]
    if changed == ["grad_accum"] and was == now:
        changed = []
    elif was != now and "grad_accum" not in changed and "batch_size" not in changed:
        raise TrainError(
            f"--resume: {path} was written by {payload.get('num_processes', 1)} process(es) with "
            f"a global batch of {was} windows; here {run.accelerator.num_processes} process(es) "
            f"make {now}. Set grad_accum so that batch_size x grad_accum x processes = {was}"
        )
    if changed:
        raise TrainError(
            f"--resume: the config differs from the checkpoint's in {changed}; only "
            f"{sorted(RESUMABLE_KEYS)} may change when resuming"
        )
    load_weights(run, payload["trainable"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.scheduler.load_state_dict(payload["scheduler"])
    set_rng_state(payload["rng"])
    return TrainState(**payload["state"])


def check_run_dir(run_dir: Path, resume: bool, echo: Callable[[str], None]) -> Path | None:
    """The checkpoint to resume from; refuse to overwrite a run unless resuming."""
    found = checkpoints(run_dir)
    if not resume:
        if found or (run_dir / "manifest.json").exists():
            raise TrainError(
                f"{run_dir} already holds a run; pass --resume to continue it (or to extend it "
                "with more epochs), or --set output_dir=<new dir>"
            )
        return None
    if not found:
        echo(f"--resume: no checkpoint in {run_dir}, starting from step 0")
        return None
    return found[-1]
