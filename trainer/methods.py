"""The training methods the ExTES paper compares, on one code path: what is trainable, how it is
attached to the base model, and what a finished run saves.

- `lora`: peft LoRA on `lora_target_modules` (optionally only the top `lora_layers` layers);
  the paper's "LLaMA-LoRA" rows.
- `adaption_prompt`: peft's adaption prompt, i.e. LLaMA-Adapter (zero-init gated prompts in the
  top `adapter_layers` attention layers); the paper's "LLaMA-Adapter" rows. peft implements it
  for Llama-architecture attention only, and llama.cpp cannot run it, so it is evaluated through
  the transformers backend (`evaluation.hf_backend`).
- `full`: every weight trainable; the paper's DialoGPT rows are a full fine-tune.

`check_base_architecture` runs before anything heavy: an adaption prompt on a base peft cannot
wrap is refused from the config file or GGUF header alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from trainer.config import ADAPTION_PROMPT_MODEL_TYPES

if TYPE_CHECKING:
    from trainer.config import TrainConfig

# llama.cpp's `general.architecture` names for the Hugging Face model types we compare against.
GGUF_ARCH_TO_MODEL_TYPE = {"llama": "llama", "mistral": "mistral", "gemma3": "gemma3"}
# Where each method's weights go in the run directory (relative to it).
OUTPUT_DIRS = {"lora": "adapter", "adaption_prompt": "adapter", "full": "model"}


class BaseSource(Protocol):
    """What these checks read of `trainer.model.BaseSource` (methods sits below model)."""

    @property
    def kind(self) -> str: ...
    @property
    def location(self) -> str: ...


class MethodError(ValueError):
    """The method cannot be used with this base or this request; the message says why."""


def base_model_type(source: BaseSource) -> str | None:
    """The base's architecture (HF `model_type`) from its config.json or GGUF header, cheaply.

    None for a hub id (nothing is downloaded to find out) or an unreadable header.
    """
    if source.kind == "hf_dir":
        try:
            config = json.loads((Path(source.location) / "config.json").read_text())
        except (OSError, ValueError):
            return None
        return str(config.get("model_type") or "") or None
    if source.kind == "gguf":
        from gguf import GGUFReader

        try:
            field = GGUFReader(source.location).get_field("general.architecture")
        except (OSError, ValueError):
            return None
        if field is None:
            return None
        arch = bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
        return GGUF_ARCH_TO_MODEL_TYPE.get(arch, arch)
    return None


def check_base_architecture(cfg: TrainConfig, source: BaseSource) -> None:
    """Refuse an adaption prompt on a base whose attention peft's implementation cannot wrap."""
    if cfg.method != "adaption_prompt":
        return
    model_type = base_model_type(source)
    if model_type is not None and model_type not in ADAPTION_PROMPT_MODEL_TYPES:
        raise MethodError(
            f"method = 'adaption_prompt' (LLaMA-Adapter) needs a Llama-architecture base "
            f"({', '.join(ADAPTION_PROMPT_MODEL_TYPES)}); base_model {cfg.base_model!r} is "
            f"{model_type!r}. Use method = 'lora' or 'full' for it"
        )


def attach(model: Any, cfg: TrainConfig) -> Any:
    """The model with the config's method attached and only its parameters trainable."""
    if cfg.method == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    from peft import get_peft_model

    n_layers = int(model.config.num_hidden_layers)
    if cfg.method == "adaption_prompt":
        from peft import AdaptionPromptConfig

        if model.config.model_type not in ADAPTION_PROMPT_MODEL_TYPES:  # a hub base, checked late
            raise MethodError(
                f"method = 'adaption_prompt' needs a Llama-architecture base, not "
                f"{model.config.model_type!r}"
            )
        config: Any = AdaptionPromptConfig(
            adapter_len=cfg.adapter_len,
            adapter_layers=min(cfg.adapter_layers or n_layers, n_layers),
            task_type=cfg.task_type,
        )
        return get_peft_model(model, config)
    from peft import LoraConfig

    layers = None
    if cfg.lora_layers is not None:
        layers = list(range(max(0, n_layers - cfg.lora_layers), n_layers))
    config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,  # type: ignore[arg-type]  # peft accepts a float scale
        lora_dropout=cfg.lora_dropout,
        bias=cfg.lora_bias,
        task_type=cfg.task_type,
        target_modules=list(cfg.lora_target_modules),
        layers_to_transform=layers,
    )
    return get_peft_model(model, config)


def base_of(model: Any) -> Any:
    """The transformers model under a peft wrapper (the model itself for a full fine-tune)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if get_base is not None else model


def describe(cfg: TrainConfig) -> str:
    """A short label for plots and logs, e.g. 'LoRA r=16' or 'adaption prompt len=10'."""
    if cfg.method == "full":
        return "full fine-tune"
    if cfg.method == "adaption_prompt":
        return f"adaption prompt len={cfg.adapter_len}"
    return f"LoRA r={cfg.lora_r}"


def save_weights(model: Any, cfg: TrainConfig, run_dir: Path) -> str:
    """Save the trained weights in the format the exporter / HF backend reads; their dir name.

    LoRA and adaption prompt: the peft adapter (`adapter/`). Full: the whole model (`model/`,
    safetensors), which the exporter converts to GGUF directly.
    """
    name = OUTPUT_DIRS[cfg.method]
    model.save_pretrained(run_dir / name, safe_serialization=True)
    return name


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for param in model.parameters():
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total
