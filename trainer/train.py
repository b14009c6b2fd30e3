"""Fine-tune a model on support dialogues (LoRA, adaption prompt or full; trainer.methods). Reads top to bottom: config → data → model →
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
from pathlib import Path
from typing import Any

from trainer.batches import collate, epoch_batches, load_dialogues, prepare_data
from trainer.checkpointing import check_run_dir, restore, restore_best, save, save_best
from trainer.config import TrainConfig
from trainer.data import Sample
from trainer.devices import make_accelerator
from trainer.methods import check_base_architecture
from trainer.model import (
    hold_frozen_linears_in,
    load_model,
    load_tokenizer,
    prepare_base,
    resolve_base,
    target_only_lm,
)
from trainer.outputs import (
    TrainState,
    stop_on_signals,
)
from trainer.run import Run, TrainError, peft_model

logger = logging.getLogger(__name__)

__all__ = ["Run", "TrainError", "peft_model", "restore", "save"]  # re-exported for callers


# ---------------------------------------------------------------------------------- data ---
def step_batches(run: Run, state: TrainState) -> tuple[list[list[int]], int, int]:
    """The micro-batches of the next step for this process, and the position after it."""
    picked, epoch, cursor = global_step_batches(run, state)
    rank, world = run.accelerator.process_index, run.accelerator.num_processes
    return picked[rank::world], epoch, cursor


def global_step_batches(run: Run, state: TrainState) -> tuple[list[list[int]], int, int]:
    """The micro-batches of the next step for all processes (process r takes [r::world]),
    and the position after it."""
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
    return picked, epoch, cursor


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
    total = planned_steps(cfg, train, accelerator.num_processes)
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


def planned_steps(cfg: TrainConfig, train: list[Sample], num_processes: int) -> int:
    """Optimizer steps of the run: max_steps, else the target-token budget, else epochs."""
    per_step = cfg.batch_size * cfg.grad_accum * num_processes
    if cfg.max_steps:
        return cfg.max_steps
    if cfg.target_token_budget:
        mean_targets = sum(s.num_targets for s in train) / max(len(train), 1)
        return max(1, math.ceil(cfg.target_token_budget / max(mean_targets * per_step, 1e-9)))
    return max(1, math.ceil(cfg.epochs * max(1, math.ceil(len(train) / per_step))))


# ---------------------------------------------------------------------------- train loop ---
def train_step(
    run: Run, batches: list[list[int]], step_targets: int | None = None
) -> tuple[float, int]:
    """One optimizer step over this process's micro-batches; (mean target loss and tokens of the
    whole step, over all processes).

    Args:
        step_targets: target tokens of the step across all processes (default: this process's,
            i.e. one process). Each process scales its loss by world / step_targets, so the
            gradient DDP averages is the sum over every target divided by their number — the
            gradient of one process running all micro-batches.
    """
    import torch

    acc, net = run.accelerator, run.net
    world = acc.num_processes
    local = sum(run.train[i].num_targets for b in batches for i in b)
    targets = max(step_targets if step_targets is not None else local, 1)
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
            acc.backward(loss_sum * world / targets if world > 1 else loss_sum / targets)
        loss_total += float(loss_sum.detach())
    if run.cfg.max_grad_norm > 0:
        acc.clip_grad_norm_(net.parameters(), run.cfg.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.local_tokens += tokens
    if world > 1:  # the logged loss and tokens are the whole step's, not this process's share
        pair = torch.tensor([loss_total, tokens], dtype=torch.float64, device=acc.device)
        both = acc.reduce(pair, reduction="sum")
        loss_total, tokens = float(both[0]), int(both[1])
    return loss_total / targets, tokens


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
    while (
        state.step < run.total_steps
        and not run.stop.get("requested")
        and not stopped_early(run, state)
    ):
        picked, epoch, cursor = global_step_batches(run, state)
        mine = picked[acc.process_index :: acc.num_processes]
        step_targets = sum(run.train[i].num_targets for b in picked for i in b)
        loss, tokens = train_step(run, mine, step_targets)
        state.step, state.epoch, state.batch_in_epoch = state.step + 1, epoch, cursor
        state.tokens += tokens
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
    if stopped_early(run, state):
        echo(
            f"early stopping at step {state.step}: no eval loss below {state.best_eval_loss:.4f} "
            f"(step {state.best_step}) for {state.evals_since_best} evals"
        )
    return state.step >= run.total_steps or stopped_early(run, state)


def stopped_early(run: Run, state: TrainState) -> bool:
    """True once early_stopping_patience evals in a row brought no new best eval loss."""
    patience = run.cfg.early_stopping_patience
    return patience is not None and state.evals_since_best >= patience


def record_eval(run: Run, state: TrainState, echo: Callable[[str], None]) -> None:
    """Measure eval loss now and add it to the loss history."""
    state.last_eval_loss = evaluate(run)
    state.history.append(_row(run, state, eval_loss=state.last_eval_loss))
    echo(f"step {state.step}: eval loss {state.last_eval_loss:.4f}")
    best = state.best_eval_loss
    if best is None or state.last_eval_loss < best - run.cfg.early_stopping_min_delta:
        state.best_eval_loss, state.best_step, state.evals_since_best = (
            state.last_eval_loss,
            state.step,
            0,
        )
        if run.cfg.early_stopping_patience is not None:
            save_best(run, state)
    else:
        state.evals_since_best += 1


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


# ---------------------------------------------------------------------------------- main ---
def train(cfg: TrainConfig, resume: bool = False, echo: Callable[[str], None] = print) -> Path:
    """The whole run: config → data → model → train → save. Returns the run directory."""
    run_dir = cfg.run_dir
    resume_from = check_run_dir(run_dir, resume, echo)
    source = resolve_base(cfg)  # cheap checks first: a bad path fails before anything heavy
    check_base_architecture(cfg, source)
    train_dialogues, eval_dialogues = load_dialogues(cfg)
    echo("resolved config:\n" + json.dumps(cfg.model_dump(mode="json"), indent=2))
    accelerator = make_accelerator(cfg)
    echo(describe_processes(accelerator))
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
    by_process = tokens_by_process(run)
    echo(
        f"process {accelerator.process_index + 1} of {accelerator.num_processes}: trained on "
        f"{run.local_tokens} tokens"
    )
    if not finished:
        echo(
            f"stopped at step {state.step}/{run.total_steps}; checkpoint saved in "
            f"{run_dir / 'checkpoints'}; continue with --resume"
        )
        return run_dir
    if accelerator.is_main_process:
        from trainer.finish import finish

        restore_best(run, state, echo)
        finish(
            run,
            state,
            run_dir,
            source.manifest(base),
            tokenizer,
            {**stats, "by_process": by_process},
        )
        echo(f"done: weights and manifest in {run_dir}")
    return run_dir


def describe_processes(acc: Any) -> str:
    """One line: how accelerate runs this job (e.g. MULTI_CPU over gloo, 2 processes)."""
    from accelerate.state import PartialState

    backend = PartialState().backend or "none"
    kind = str(acc.distributed_type).rsplit(".", 1)[-1]
    return (
        f"accelerate: {kind}, {acc.num_processes} process(es), backend {backend}, device "
        f"{acc.device}, mixed precision {acc.mixed_precision}"
    )


def tokens_by_process(run: Run) -> list[int]:
    """Tokens each process trained on in this session (all processes must call it)."""
    import torch

    acc = run.accelerator
    if acc.num_processes == 1:
        return [run.local_tokens]
    mine = torch.tensor([run.local_tokens], dtype=torch.int64, device=acc.device)
    return [int(x) for x in acc.gather(mine).tolist()]
