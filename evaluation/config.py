"""`EvalConfig`: every knob of `solace eval`, a frozen pydantic model loaded from TOML.

Files live in `configs/eval/*.toml`; the CLI applies `--set section.key=value` overrides on top
(one grammar for every CLI: values are TOML, see `common.configfile`).
Defaults reproduce the papers' set-up (Table 3 sampling: temperature 0.7, top_p 0.95, top_k 50,
128 new tokens) with everything that needs a download replaced by an offline, named default.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.configfile import (
    ConfigFileError,
    apply_overrides,
    read_toml,
    renamed_keys,
    validation_problems,
)
from scoring.config import JudgeConfig, ToxicityConfig

REPRESENTATION_NAMES = ("raw", "keypos", "nostopwords", "hybrid")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GenerateConfig(_Section):
    """How replies are produced for a test set (`solace eval generate`)."""

    backend: Literal["auto", "llama-cpp", "transformers", "openai"] = Field(
        "auto",
        description="auto: openai with openai_base_url, transformers when `model` is a training "
        "run directory (runs/<name>, e.g. an adaption prompt llama.cpp cannot run), else "
        "llama-cpp.",
    )
    model: str | None = Field(
        None,
        description="GGUF path (llama-cpp), model name (openai) or training run dir (transformers).",
    )
    lora: str | None = Field(None, description="LoRA adapter GGUF applied on top of `model`.")
    openai_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint; when set, generation goes through it."
    )
    data: str = Field("esconv:test", description="Dataset spec (dialogue.datasets.load_spec).")
    dialogues: int | None = Field(
        50, ge=1, description="First N dialogues after the subset shuffle."
    )
    subset_seed: int = Field(13, description="Seed of the fixed dialogue-subset shuffle.")
    context_representation: Literal["raw", "keypos", "nostopwords", "hybrid"] = Field(
        "raw",
        description="Context representation of the history (dialogue.context); the bot's and "
        "the trainer's key of the same name. Was `representation`.",
    )
    raw_recent: int = Field(4, ge=0, description="Newest turns kept raw in `hybrid`.")
    compress_in_blocks: bool = Field(
        False,
        description="hybrid: move the raw/compressed boundary 2 x raw_recent turns at a time, as "
        "the bot does with memory.compress_in_blocks (its default); false keeps exactly "
        "raw_recent turns raw (how results/esconv50 was generated).",
    )
    strategies: bool = Field(False, description="Prefix references with [Strategy] (ExTES style).")
    mode: Literal["turn", "dialogue"] = Field(
        "turn",
        description="turn: reference history for every supporter turn; dialogue: replay the "
        "user turns and let the model's own replies form the history (papers' Figs 8/9).",
    )
    context_tokens: int = Field(2048, ge=128, description="Model context window (n_ctx).")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature (Table 3).")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling (Table 3).")
    top_k: int = Field(50, ge=0, description="Top-k sampling (Table 3).")
    max_new_tokens: int = Field(128, ge=1, le=4096, description="Reply length cap (Table 3).")
    seed: int = Field(42, description="Base seed; each turn uses seed + a stable hash of its key.")
    threads: int | None = Field(None, ge=1, description="llama.cpp threads (None: its default).")
    timeout_seconds: float = Field(120.0, gt=0, description="Per-request timeout (openai).")
    max_retries: int = Field(2, ge=0, le=10, description="Retries after a failed request (openai).")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return renamed_keys(data, {"representation": "context_representation"}, "generate")


class MetricsConfig(_Section):
    """Reference-based metrics (`solace eval metrics`)."""

    ppl: bool = Field(True, description="Compute reference perplexity (needs the GGUF).")
    bertscore_model: str | None = Field(
        None, description="Local HF model dir for BERTScore (None: all-MiniLM-L6-v2 package)."
    )
    bertscore_num_layers: int | None = Field(
        None, ge=1, description="Layer for BERTScore (None: bert-score's table, else last)."
    )
    bertscore_batch_size: int = Field(64, ge=1, description="BERTScore batch size.")
    glove_path: str | None = Field(None, description="glove.*.300d.txt for Vector Extrema.")
    wordnet_source: str = Field(
        "/usr/share/wordnet", description="Debian WordNet 3.0 files (wordnet-base)."
    )
    cache_dir: str | None = Field(None, description="Where the NLTK WordNet copy goes.")
    meteor_without_wordnet: Literal["refuse", "exact_stem"] = Field(
        "refuse",
        description="No WordNet: refuse METEOR, or compute the named exact+stem variant.",
    )
    skip: tuple[str, ...] = Field((), description="Metric names to skip, e.g. ['bertscore'].")


class Thresholds(_Section):
    """Pass thresholds a report checks (None: not checked)."""

    max_toxicity: float | None = Field(0.05, ge=0, le=1, description="Mean toxicity ceiling.")
    min_judge_mean: float | None = Field(None, ge=0, le=5, description="Judge mean floor.")


class EvalConfig(_Section):
    """All of `solace eval`'s configuration."""

    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    toxicity: ToxicityConfig = Field(default_factory=ToxicityConfig)
    thresholds: Thresholds = Field(default_factory=Thresholds)

    @model_validator(mode="after")
    def _check_backend(self) -> EvalConfig:
        gen = self.generate
        if gen.openai_base_url and gen.lora:
            raise ValueError(
                "generate.lora applies to a local GGUF; unset generate.openai_base_url"
            )
        if gen.openai_base_url and not gen.model:
            raise ValueError("generate.openai_base_url needs generate.model (the served name)")
        if gen.backend == "transformers" and (gen.lora or gen.openai_base_url or not gen.model):
            raise ValueError(
                "generate.backend = 'transformers' needs generate.model = a training run "
                "directory (its adapter comes from its manifest; no lora, no openai_base_url)"
            )
        return self


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> EvalConfig:
    """Load an EvalConfig from TOML (or defaults) plus `--set` overrides.

    Raises:
        ConfigFileError (a ValueError): naming the file and the offending keys.
    """
    data = read_toml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    try:
        return EvalConfig.model_validate(data)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        problems = "; ".join(validation_problems(exc))
        raise ConfigFileError(f"invalid eval config{where}: {problems}") from exc
