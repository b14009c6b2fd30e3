"""What a finished run writes: the weights (by method), tokenizer, chat template, config, loss
history and curve, and manifest.json — the contract the exporter and the evaluation read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.runfiles import write_json
from trainer.methods import describe, save_weights, trainable_parameters
from trainer.outputs import TrainState, plot_losses, write_history, write_manifest

if TYPE_CHECKING:
    from trainer.run import Run


def finish(
    run: Run,
    state: TrainState,
    run_dir: Path,
    base_manifest: dict[str, Any],
    tokenizer: Any,
    stats: dict[str, Any],
) -> None:
    """Weights, tokenizer, chat template, config, loss CSV + curve, manifest.json."""
    from dialogue.prompts import SYSTEM_PROMPT
    from trainer.run import peft_model

    cfg = run.cfg
    model = peft_model(run)
    weights_dir = save_weights(model, cfg, run_dir)
    tokenizer.save_pretrained(run_dir / "tokenizer")
    (run_dir / "chat_template.jinja").write_text(tokenizer.chat_template)
    write_json(run_dir / "config.json", cfg.model_dump(mode="json"))
    write_history(run_dir, state.history)
    plot_losses(run_dir, state.history, f"{cfg.name}: {describe(cfg)}")
    train_losses = [r["train_loss"] for r in state.history if "train_loss" in r]
    trainable, total = trainable_parameters(model)
    weights_key = "model_dir" if cfg.method == "full" else "adapter_dir"
    write_manifest(
        run_dir,
        {
            "config": cfg.model_dump(mode="json"),
            "method": cfg.method,
            "base_model": base_manifest,
            "chat_template": tokenizer.chat_template,
            "system_prompt": SYSTEM_PROMPT if cfg.use_system_prompt else None,
            "context_representation": cfg.context_representation,
            "raw_recent": cfg.raw_recent,
            "compress_in_blocks": cfg.compress_in_blocks,
            "windows": cfg.windows,
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
                "best_eval_loss": state.best_eval_loss,
                "best_step": state.best_step,
                "weights_step": _weights_step(cfg, state),
                "tokens_by_process": stats.get("by_process"),
                "trainable_parameters": trainable,
                "total_parameters": total,
                "train_runtime_s": round(state.elapsed_s, 1),
                "tokens_per_s": round(state.tokens / max(state.elapsed_s, 1e-9), 1),
            },
            "artifacts": {
                weights_key: weights_dir,
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


def _weights_step(cfg: Any, state: TrainState) -> int:
    """The step whose weights were saved: the best eval's under early stopping, else the last."""
    if cfg.early_stopping_patience is not None and state.best_step is not None:
        return state.best_step
    return state.step
