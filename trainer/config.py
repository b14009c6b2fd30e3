"""`TrainConfig`: every knob of a training run, loaded from `configs/train/*.toml`.

Frozen pydantic model with `extra="forbid"`, so a misspelt key is an error, not a silent
default. Cross-field checks raise `ValueError` naming the offending keys. Nothing here imports
torch; checks that need the file system or a GPU live in `trainer.model.preflight`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.configfile import (
    ConfigFileError,
    apply_overrides,
    read_toml_extending,
    validate_model,
)

REPRESENTATIONS = ("raw", "keypos", "nostopwords", "hybrid")
# Shortest sequence that can hold a system prompt and one short exchange.
MIN_SEQ_LEN_TOKENS = 64
# Keys that may differ between the run being resumed and the config passed with --resume:
# they change bookkeeping or the length of the run, never what one step computes.
RESUMABLE_KEYS = frozenset(
    {
        "epochs",
        "max_steps",
        "eval_every",
        "save_every",
        "log_every",
        "keep_checkpoints",
        "num_threads",
        "output_dir",
        "name",  # the default output dir only: a longer run may continue a shorter one's
        "gradient_checkpointing",  # memory and speed only: the same numbers either way
        "target_token_budget",
        "early_stopping_patience",
        "early_stopping_min_delta",
    }
)
METHODS = ("lora", "adaption_prompt", "full")
# Architectures whose attention peft's adaption prompt (LLaMA-Adapter) knows how to wrap: the
# Llama family (SmolLM2 is one). peft also wraps GPT-2, which is not the paper's method.
ADAPTION_PROMPT_MODEL_TYPES = ("llama", "mistral")


class TrainConfigError(ConfigFileError):
    """A training config that cannot be used; the message names the file and keys."""


class TrainConfig(BaseModel):
    """A fine-tuning run (LoRA / QLoRA, adaption prompt or full). Every field is documented in
    docs/training.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- run -------------------------------------------------------------------------------
    name: str = Field(min_length=1, description="Run name; the default output dir is runs/<name>.")
    output_dir: str | None = Field(
        None, description="Where the run writes its outputs; None means runs/<name>."
    )
    seed: int = Field(42, description="Seeds data order, LoRA init and dropout.")

    # --- base model ------------------------------------------------------------------------
    base_model: str = Field(
        description="Hugging Face directory, hub id (needs allow_download), a .gguf file, or "
        "'pkg:<python package>/<file.gguf>' for a GGUF shipped inside an installed package."
    )
    allow_download: bool = Field(
        False, description="Allow fetching a hub id from the Hugging Face hub at run time."
    )
    base_cache_dir: str = Field(
        "runs/base-cache",
        description="Where a GGUF base is cached after conversion to a plain safetensors model.",
    )
    chat_template: str | None = Field(
        None,
        description="Jinja chat template (inline or a path to a .jinja file) that replaces the "
        "tokenizer's own; None keeps the base model's template.",
    )

    # --- data ------------------------------------------------------------------------------
    dataset: str = Field(
        "esconv:train", description="Training dialogues: a dialogue.datasets spec or a file path."
    )
    eval_dataset: str | None = Field(
        None,
        description="Held-out dialogues; None splits `dataset` scene-stratified by eval_fraction.",
    )
    eval_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="Held-out share when eval_dataset is None."
    )
    max_seq_len: int = Field(
        512, ge=MIN_SEQ_LEN_TOKENS, description="Tokens per sample; windows never cut a turn."
    )
    history_tokens: int = Field(
        128,
        ge=0,
        description="Token budget kept free in each window for earlier turns (in the context "
        "representation) before its first target turn.",
    )
    context_representation: Literal["raw", "keypos", "nostopwords", "hybrid"] = Field(
        "raw", description="How earlier-context turns are written (see docs/training.md)."
    )
    raw_recent: int = Field(
        4, ge=0, description="With hybrid: how many newest context turns stay raw."
    )
    strategy_conditioning: Literal["none", "prefix"] = Field(
        "none", description="prefix: assistant targets start with '[Strategy] ' (ExTES variant)."
    )
    windows: Literal["packed", "served"] = Field(
        "packed",
        description="packed: long multi-target windows, history raw except before the window; "
        "served: every target sees its history exactly as the bot's context builder shows it "
        "(context_representation, raw_recent, compress_in_blocks).",
    )
    compress_in_blocks: bool = Field(
        True,
        description="served hybrid windows: the bot's memory.compress_in_blocks (older turns are "
        "compressed 2 x raw_recent at a time).",
    )
    use_system_prompt: bool = Field(
        True, description="Start every sample with dialogue.prompts.SYSTEM_PROMPT, as served."
    )
    max_train_dialogues: int | None = Field(
        None, ge=1, description="Use only the first N training dialogues (smoke tests)."
    )
    eval_max_samples: int = Field(
        64, ge=1, description="Eval loss is measured on this many held-out samples (fixed set)."
    )

    # --- method ----------------------------------------------------------------------------
    method: Literal["lora", "adaption_prompt", "full"] = Field(
        "lora",
        description="lora: low-rank adapters (peft); adaption_prompt: LLaMA-Adapter's gated "
        "prompts (peft AdaptionPromptConfig, Llama-architecture bases); full: every weight.",
    )
    adapter_len: int = Field(10, ge=1, description="adaption_prompt: prompt tokens per layer.")
    adapter_layers: int | None = Field(
        None, ge=1, description="adaption_prompt: adapt the top N layers; None = all."
    )

    # --- LoRA ------------------------------------------------------------------------------
    lora_r: int = Field(16, description="LoRA rank; must be > 0.")
    lora_alpha: float = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha/r).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    lora_bias: Literal["none", "all", "lora_only"] = Field("none", description="peft `bias`.")
    lora_target_modules: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj", "o_proj"), min_length=1, description="Modules to adapt."
    )
    lora_layers: int | None = Field(
        None,
        ge=1,
        description="Adapt only the last N decoder layers (backward then stops there: faster); "
        "None adapts all.",
    )
    task_type: Literal["CAUSAL_LM"] = Field("CAUSAL_LM", description="peft task type.")
    quantization: Literal["none", "nf4"] = Field(
        "none", description="nf4 = QLoRA: 4-bit NF4 base via bitsandbytes (CUDA only)."
    )

    # --- optimisation ----------------------------------------------------------------------
    epochs: float = Field(1.0, gt=0, description="Passes over the training samples.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    target_token_budget: int | None = Field(
        None,
        ge=1,
        description="Train on about this many target (supervised) tokens, whatever the windows "
        "look like: steps = budget / mean target tokens per step (overrides epochs; max_steps "
        "overrides it). How the rows of a method comparison get the same budget.",
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="Stop after this many evals without a new best eval loss; the outputs are "
        "then the best eval step's weights. None: train to the end.",
    )
    early_stopping_min_delta: float = Field(
        0.0, ge=0, description="An eval loss must beat the best by more than this to count."
    )
    batch_size: int = Field(4, ge=1, description="Samples per micro-batch per device.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    adam_beta1: float = Field(0.9, gt=0, lt=1, description="AdamW beta1.")
    adam_beta2: float = Field(0.999, gt=0, lt=1, description="AdamW beta2.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping; 0 disables it.")
    lr_scheduler: Literal["linear", "cosine", "constant_with_warmup"] = Field(
        "cosine", description="Decay after warmup (transformers.get_scheduler)."
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Warmup share of all steps.")

    # --- efficiency ------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda if present.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast dtype. auto: bf16 where the GPU/CPU supports it, else fp16 on "
        "CUDA, fp32 on CPU. fp16 is CUDA-only.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward: less memory, ~30% slower."
    )
    num_threads: int | None = Field(
        None, ge=1, description="torch CPU threads; None = the cores this process may use."
    )

    # --- bookkeeping -----------------------------------------------------------------------
    log_every: int = Field(10, ge=1, description="Steps between loss-history rows.")
    eval_every: int = Field(200, ge=1, description="Steps between eval-loss measurements.")
    save_every: int = Field(100, ge=1, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(2, ge=1, description="Newest checkpoints kept on disk.")

    @model_validator(mode="after")
    def _check_cross_fields(self) -> TrainConfig:
        """Cross-field checks; each error names the keys involved."""
        if self.lora_r <= 0:
            raise ValueError(f"lora_r must be > 0, got {self.lora_r}")
        if self.history_tokens >= self.max_seq_len - MIN_SEQ_LEN_TOKENS // 2:
            raise ValueError(
                f"history_tokens ({self.history_tokens}) must leave room for target turns in "
                f"max_seq_len ({self.max_seq_len}); lower history_tokens or raise max_seq_len"
            )
        if self.quantization == "nf4" and self.device == "cpu":
            raise ValueError("quantization = 'nf4' (QLoRA) needs device = 'cuda' or 'auto'")
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision = 'fp16' is CUDA-only; use 'bf16' or 'fp32' with device")
        if self.method != "lora" and self.quantization != "none":
            raise ValueError(
                f"quantization = {self.quantization!r} (QLoRA) needs method = 'lora', "
                f"not {self.method!r}"
            )
        return self

    @property
    def run_dir(self) -> Path:
        """The output directory of this run."""
        return Path(self.output_dir) if self.output_dir else Path("runs") / self.name


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a TOML config (and what it `extends`), apply `--set key=value` overrides
    (`common.configfile`), validate; TrainConfigError on any problem."""
    data = apply_overrides(read_toml_extending(path, TrainConfigError), overrides, TrainConfigError)
    data.setdefault("name", Path(path).stem)
    return validate_config(data, source=str(path))


def validate_config(data: dict[str, Any], source: str = "<config>") -> TrainConfig:
    """Validate a dict into a TrainConfig, turning pydantic errors into one readable message."""
    return validate_model(TrainConfig, data, source, "training config", TrainConfigError)
