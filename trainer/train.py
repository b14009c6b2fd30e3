"""Train a LoRA adapter on support dialogues. Reads top to bottom: config → data → model →
train → save, in the spirit of nanoGPT's train.py, with transformers + peft + accelerate.

`train(cfg, resume)` is the whole run; the `solace train` command only parses arguments.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.runfiles import write_json
from trainer.batches import collate, epoch_batches, load_dialogues, prepare_data
from trainer.config import RESUMABLE_KEYS, TrainConfig
from trainer.data import Sample
from trainer.devices import make_accelerator
from trainer.model import (
    BaseSource,
    hold_frozen_linears_in,
    load_model,
    load_tokenizer,
    prepare_base,
    resolve_base,
    target_only_lm,
)
from trainer.outputs import (
    TrainState,
    checkpoints,
    plot_losses,
    rng_state,
    save_checkpoint,
    set_rng_state,
    state_dict,
    stop_on_signals,
    write_history,
    write_manifest,
)

logger = logging.getLogger(__name__)


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


# ---------------------------------------------------------------------------------- data ---
def step_batches(run: Run, state: TrainState) -> tuple[list[list[int]], int, int]:
    """The micro-batches of the next step for this process, and the position after it."""
    per_step = run.cfg.grad_accum * run.accelerator.num_processes
    epoch, cursor = state.epoch, state.batch_in_epoch
    picked: list[list[int]] = []
    order = epoch_batches(run.train, run.cfg.batch_size, run.cfg.seed, epoch)
    while len(picked) < per_step:
        if cursor >= len(order):
            epoch, cursor = epoch + 1, 0
            order = epoch_batches(run.train, run.cfg.batch_size, run.cfg.seed, epoch)
        picked.append(order[cursor])
        cursor += 1
    rank, world = run.accelerator.process_index, run.accelerator.num_processes
    return picked[rank::world], epoch, cursor


# --------------------------------------------------------------------------------- model ---
def build_run(
    cfg: TrainConfig,
    model: Any,
    train: list[Sample],
    evals: list[Sample],
    pad_id: int,
    accelerator: Any,
) -> Run:
    """Optimizer, scheduler and the target-only loss module, prepared by accelerate."""
    import torch
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
    )
    per_step = cfg.batch_size * cfg.grad_accum * accelerator.num_processes
    steps_per_epoch = max(1, math.ceil(len(train) / per_step))
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    scheduler = get_scheduler(
        cfg.lr_scheduler,
        optimizer,
        num_warmup_steps=int(cfg.warmup_ratio * total),
        num_training_steps=total,
    )
    if accelerator.device.type == "cpu" and accelerator.mixed_precision == "bf16":
        hold_frozen_linears_in(model, torch.bfloat16)
    # The scheduler is not prepared: accelerate would step it once per process.
    net, optimizer = accelerator.prepare(target_only_lm(model), optimizer)
    return Run(cfg, accelerator, net, optimizer, scheduler, train, evals, pad_id, total, {})


def peft_model(run: Run) -> Any:
    """The peft model inside the (possibly wrapped) loss module."""
    return run.accelerator.unwrap_model(run.net).model


# ---------------------------------------------------------------------------- train loop ---
def train_step(run: Run, batches: list[list[int]]) -> tuple[float, int]:
    """One optimizer step over this process's micro-batches; (mean target loss, tokens)."""
    acc, net = run.accelerator, run.net
    targets = sum(run.train[i].num_targets for b in batches for i in b)
    loss_total, tokens = 0.0, 0
    net.train()
    for k, batch in enumerate(batches):
        inputs = collate([run.train[i] for i in batch], run.pad_id, acc.device)
        tokens += int(inputs["attention_mask"].sum())
        last = k == len(batches) - 1
        # DeepSpeed ZeRO-2 accumulates by itself and refuses no_sync.
        sync = contextlib.nullcontext() if last or _is_deepspeed(acc) else acc.no_sync(net)
        with sync, acc.autocast():
            loss_sum, _n = net(**inputs)
            acc.backward(loss_sum / max(targets, 1))
        loss_total += float(loss_sum.detach())
    if run.cfg.max_grad_norm > 0:
        acc.clip_grad_norm_(net.parameters(), run.cfg.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_total / max(targets, 1), tokens


def _is_deepspeed(acc: Any) -> bool:
    return str(acc.distributed_type).endswith("DEEPSPEED")


def evaluate(run: Run) -> float:
    """Mean loss per target token on the fixed held-out samples."""
    import torch

    acc, net = run.accelerator, run.net
    net.eval()
    loss, count = 0.0, 0
    bs = run.cfg.batch_size
    with torch.no_grad():
        for start in range(0, len(run.evals), bs):
            inputs = collate(run.evals[start : start + bs], run.pad_id, acc.device)
            with acc.autocast():
                loss_sum, n = net(**inputs)
            loss, count = loss + float(loss_sum), count + int(n)
    net.train()
    return loss / max(count, 1)


def train_loop(run: Run, state: TrainState, run_dir: Path, echo: Callable[[str], None]) -> bool:
    """Steps until done or stopped; returns True when all steps ran."""
    from tqdm import tqdm

    cfg, acc = run.cfg, run.accelerator
    bar = tqdm(
        total=run.total_steps,
        initial=state.step,
        disable=not acc.is_main_process,
        dynamic_ncols=True,
        unit="step",
    )
    window_loss, window_steps, started = 0.0, 0, time.monotonic() - state.elapsed_s
    tokens_at_start, time_at_start = state.tokens, time.monotonic()
    while state.step < run.total_steps and not run.stop.get("requested"):
        batches, epoch, cursor = step_batches(run, state)
        loss, tokens = train_step(run, batches)
        state.step, state.epoch, state.batch_in_epoch = state.step + 1, epoch, cursor
        state.tokens += tokens * acc.num_processes
        state.elapsed_s = time.monotonic() - started
        window_loss, window_steps = window_loss + loss, window_steps + 1
        speed = (state.tokens - tokens_at_start) / max(time.monotonic() - time_at_start, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:.0f}", epoch=epoch)
        if state.step % cfg.log_every == 0 or state.step == run.total_steps:
            state.history.append(_row(run, state, train_loss=window_loss / window_steps))
            window_loss, window_steps = 0.0, 0
        if state.step % cfg.eval_every == 0 or state.step == run.total_steps:
            record_eval(run, state, echo)
        if state.step % cfg.save_every == 0:
            save(run, state, run_dir)
    bar.close()
    return state.step >= run.total_steps


def record_eval(run: Run, state: TrainState, echo: Callable[[str], None]) -> None:
    """Measure eval loss now and add it to the loss history."""
    state.last_eval_loss = evaluate(run)
    state.history.append(_row(run, state, eval_loss=state.last_eval_loss))
    echo(f"step {state.step}: eval loss {state.last_eval_loss:.4f}")


def _row(run: Run, state: TrainState, **losses: float) -> dict[str, Any]:
    per_step = run.cfg.batch_size * run.cfg.grad_accum * run.accelerator.num_processes
    return {
        "step": state.step,
        "epoch": round(state.step * per_step / max(len(run.train), 1), 4),
        "lr": f"{run.scheduler.get_last_lr()[0]:.3e}",
        "tokens": state.tokens,
        "tokens_per_s": round(state.tokens / max(state.elapsed_s, 1e-9), 1),
        "elapsed_s": round(state.elapsed_s, 1),
        **{k: round(v, 5) for k, v in losses.items()},
    }


# ----------------------------------------------------------------------------- checkpoints ---
def save(run: Run, state: TrainState, run_dir: Path) -> None:
    """Checkpoint: trainable weights, optimizer, scheduler, RNG and data position."""
    run.accelerator.wait_for_everyone()
    if not run.accelerator.is_main_process:
        return
    model = peft_model(run)
    trainable = {
        n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad
    }
    payload = {
        "trainable": trainable,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": rng_state(),
        "state": state_dict(state),
        "config": run.cfg.model_dump(mode="json"),
    }
    write_history(run_dir, state.history)
    save_checkpoint(run_dir, payload, run.cfg.keep_checkpoints)


def restore(run: Run, path: Path) -> TrainState:
    """Load a checkpoint into the run; refuse one made with a different setup."""
    import torch

    payload = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    old, new = payload["config"], run.cfg.model_dump(mode="json")
    changed = sorted(k for k in new if k not in RESUMABLE_KEYS and old.get(k) != new[k])
    if changed:
        raise TrainError(
            f"--resume: the config differs from the checkpoint's in {changed}; only "
            f"{sorted(RESUMABLE_KEYS)} may change when resuming"
        )
    params = dict(peft_model(run).named_parameters())
    with torch.no_grad():
        for name, value in payload["trainable"].items():
            params[name].copy_(value)
    run.optimizer.load_state_dict(payload["optimizer"])
    run.scheduler.load_state_dict(payload["scheduler"])
    set_rng_state(payload["rng"])
    return TrainState(**payload["state"])


# ---------------------------------------------------------------------------------- main ---
def train(cfg: TrainConfig, resume: bool = False, echo: Callable[[str], None] = print) -> Path:
    """The whole run: config → data → model → train → save. Returns the run directory."""
    run_dir = cfg.run_dir
    resume_from = check_run_dir(run_dir, resume, echo)
    source = resolve_base(cfg)  # cheap checks first: a bad path fails before anything heavy
    train_dialogues, eval_dialogues = load_dialogues(cfg)
    echo("resolved config:\n" + json.dumps(cfg.model_dump(mode="json"), indent=2))
    accelerator = make_accelerator(cfg)
    base = prepare_base(source, cfg)
    tokenizer = load_tokenizer(base, cfg)
    train_samples, eval_samples, stats = prepare_data(
        cfg, tokenizer, train_dialogues, eval_dialogues, run_dir, echo
    )
    model = load_model(base, cfg, accelerator.local_process_index)
    run = build_run(cfg, model, train_samples, eval_samples, tokenizer.pad_token_id, accelerator)
    state = restore(run, resume_from) if resume_from else TrainState()
    if resume_from:
        echo(f"resumed from {resume_from} (step {state.step} of {run.total_steps})")
    with stop_on_signals(run.stop):
        if state.step == 0:
            record_eval(run, state, echo)  # the curve starts at the base model's loss
        finished = train_loop(run, state, run_dir, echo)
        evaluated = [r["step"] for r in state.history if "eval_loss" in r]
        if finished and evaluated[-1:] != [state.step]:
            record_eval(run, state, echo)  # e.g. outputs written from a checkpoint
    save(run, state, run_dir)
    if not finished:
        echo(
            f"stopped at step {state.step}/{run.total_steps}; checkpoint saved in "
            f"{run_dir / 'checkpoints'}; continue with --resume"
        )
        return run_dir
    if accelerator.is_main_process:
        finish(run, state, run_dir, source, base, tokenizer, stats)
        echo(f"done: adapter and manifest in {run_dir}")
    return run_dir


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


def finish(
    run: Run,
    state: TrainState,
    run_dir: Path,
    source: BaseSource,
    base: str,
    tokenizer: Any,
    stats: dict[str, Any],
) -> None:
    """Adapter, tokenizer, chat template, config, loss CSV + curve, manifest.json."""
    from dialogue.prompts import SYSTEM_PROMPT

    cfg = run.cfg
    peft_model(run).save_pretrained(run_dir / "adapter")
    tokenizer.save_pretrained(run_dir / "tokenizer")
    (run_dir / "chat_template.jinja").write_text(tokenizer.chat_template)
    write_json(run_dir / "config.json", cfg.model_dump(mode="json"))
    write_history(run_dir, state.history)
    plot_losses(run_dir, state.history, f"{cfg.name}: LoRA r={cfg.lora_r}")
    train_losses = [r["train_loss"] for r in state.history if "train_loss" in r]
    write_manifest(
        run_dir,
        {
            "config": cfg.model_dump(mode="json"),
            "base_model": source.manifest(base),
            "chat_template": tokenizer.chat_template,
            "system_prompt": SYSTEM_PROMPT if cfg.use_system_prompt else None,
            "context_representation": cfg.context_representation,
            "raw_recent": cfg.raw_recent,
            "strategy_conditioning": cfg.strategy_conditioning,
            "data": {
                "spec": cfg.dataset,
                "eval_spec": cfg.eval_dataset
                or f"{cfg.dataset} (stratified {cfg.eval_fraction:.0%} held out)",
                "samples": stats["train"]["samples"],
                "tokens": stats["train"]["tokens"],
                "target_tokens": stats["train"]["target_tokens"],
                "eval_samples": stats["eval_samples_used"],
            },
            "metrics": {
                "steps": state.step,
                "tokens": state.tokens,
                "epochs": state.history[-1]["epoch"] if state.history else 0,
                "final_train_loss": train_losses[-1] if train_losses else None,
                "final_eval_loss": state.last_eval_loss,
                "train_runtime_s": round(state.elapsed_s, 1),
                "tokens_per_s": round(state.tokens / max(state.elapsed_s, 1e-9), 1),
            },
            "artifacts": {
                "adapter_dir": "adapter",
                "tokenizer_dir": "tokenizer",
                "chat_template": "chat_template.jinja",
                "config": "config.json",
                "data_stats": "data_stats.json",
                "loss_history": "loss_history.csv",
                "loss_curve": "loss_curve.png",
                "checkpoints": "checkpoints",
            },
        },
    )
