"""The device side of a run: torch threads, precision, and the accelerate `Accelerator` (one
process on CPU or GPU, or one of several under `accelerate launch`, with DDP or DeepSpeed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.config import TrainConfig


class DeviceError(RuntimeError):
    """The requested device or precision is not available here."""


def resolve_precision(cfg: TrainConfig, on_cuda: bool) -> str:
    """accelerate's mixed_precision: "no", "bf16" or "fp16"."""
    import torch

    if cfg.precision != "auto":
        return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[cfg.precision]
    if on_cuda:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if torch.backends.mkldnn.is_available() and _cpu_has_bf16() else "no"


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def make_accelerator(cfg: TrainConfig) -> Any:
    """An Accelerator for the device and precision (one process, or `accelerate launch`)."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device = 'cuda' but no CUDA GPU is visible; use device = 'cpu'")
    if cfg.quantization == "nf4" and not torch.cuda.is_available():
        raise DeviceError("quantization = 'nf4' (QLoRA) needs a CUDA GPU and bitsandbytes")
    on_cuda = cfg.device != "cpu" and torch.cuda.is_available()
    torch.set_num_threads(cfg.num_threads or len(os.sched_getaffinity(0)))
    precision = resolve_precision(cfg, on_cuda)
    # Accelerator state is a process-wide singleton; a second run in one process (tests, the
    # benchmark) with another precision would be refused. The process group itself is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        cpu=not on_cuda,
        mixed_precision=precision,
        deepspeed_plugin=deepspeed_plugin(cfg, precision),
    )
    set_seed(cfg.seed)
    return accelerator


def deepspeed_plugin(cfg: TrainConfig, precision: str) -> Any:
    """Under `accelerate launch` with DeepSpeed: its plugin with the "auto" values filled in
    (no data loader is prepared, so accelerate cannot infer them); None otherwise.

    Untested here (no GPU): see docs/training.md.
    """
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true":
        return None
    from accelerate.utils import DeepSpeedPlugin

    plugin = DeepSpeedPlugin()  # reads the config file that accelerate launch names
    ds = plugin.deepspeed_config
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ds["train_micro_batch_size_per_gpu"] = cfg.batch_size
    ds["gradient_accumulation_steps"] = cfg.grad_accum
    ds["train_batch_size"] = cfg.batch_size * cfg.grad_accum * world
    ds["gradient_clipping"] = cfg.max_grad_norm
    ds.setdefault("bf16", {})["enabled"] = precision == "bf16"
    ds.setdefault("fp16", {})["enabled"] = precision == "fp16"
    return plugin
