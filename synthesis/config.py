"""`SynthConfig`: every knob of `solace data synthesize`, a frozen pydantic model read from TOML.

Files live in `configs/synth/*.toml`; `--set key=value` (or `--set validation.key=value`)
overrides them. Prices are USD per million tokens; an endpoint that is not on this machine must
name its prices, so the hard budget cap means something.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.configfile import ConfigFileError, apply_overrides, read_toml, validate_model

JsonMode = Literal["auto", "json_schema", "json_object_schema", "json_object", "none"]
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


class SynthConfigError(ConfigFileError):
    """A synthesis config is missing, unreadable or invalid; the message names the keys."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ValidationConfig(_Section):
    """The quality gates every generated dialogue passes before it reaches the review queue."""

    min_turns: int = Field(8, ge=2, description="Fewest utterances (ExTES averages 18.2).")
    max_turns: int = Field(40, ge=2, description="Most utterances.")
    max_words_per_turn: int = Field(150, ge=5, description="Longest utterance, in words.")
    min_description_words: int = Field(8, ge=0, description="Shortest accepted description.")
    max_missing_strategy_fraction: float = Field(
        0.2, ge=0.0, le=1.0, description="Share of AI turns allowed without a strategy label."
    )
    unknown_strategy: Literal["reject", "drop_label"] = Field(
        "reject",
        description="A label outside the taxonomy (after variant and close-match mapping): "
        "reject the dialogue, or keep it with the label removed.",
    )
    seed_copy_threshold: float = Field(
        0.5, gt=0.0, le=1.0, description="Word-3-gram Jaccard with the example seed that rejects."
    )
    seed_copy_turn_fraction: float = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="Share of turns copied verbatim from the seed that rejects.",
    )
    dedup_threshold: float = Field(
        0.7, gt=0.0, le=1.0, description="Word-3-gram Jaccard (MinHash LSH) that marks a duplicate."
    )
    seeker_crisis: Literal["reject", "keep"] = Field(
        "reject",
        description="A help-seeker turn or description the crisis screen calls a crisis: the bot "
        "never lets the model answer those, so such dialogues are rejected by default.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> ValidationConfig:
        if self.min_turns > self.max_turns:
            raise ValueError("validation.min_turns must not exceed validation.max_turns")
        return self


class SynthConfig(_Section):
    """One synthesis run: endpoint, inputs, template sampling, limits and quality gates."""

    name: str = Field("synth", description="Run name; the default output_dir is runs/synth/<name>.")
    output_dir: str | None = Field(None, description="Run directory (store, output, manifest).")
    base_url: str | None = Field(
        None,
        description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 (None: OpenAI).",
    )
    model: str = Field(..., min_length=1, description="Model name the endpoint serves.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the key (never in TOML)."
    )
    scenarios: str | None = Field(
        None, description="TOML/YAML scenario file; None: the 36 ExTES scenarios."
    )
    only_scenarios: list[str] = Field(
        default_factory=list, description="Use only these scenario names (empty: all)."
    )
    seeds: str = Field(
        "extes:all", description="Round-1 seed dialogues: a spec or file dialogue.datasets reads."
    )
    per_scenario: int = Field(2, ge=1, le=10_000, description="Target dialogues per scenario.")
    taxonomy: Literal["extes"] = Field("extes", description="Strategy taxonomy (ExTES's 16).")
    temperature: float = Field(0.9, ge=0.0, le=2.0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling.")
    max_tokens: int = Field(1800, ge=64, le=32_768, description="Answer length cap in tokens.")
    json_mode: JsonMode = Field(
        "auto",
        description="Structured output: json_schema (OpenAI strict schema), json_object_schema "
        "(llama.cpp grammar), json_object, none; auto starts at json_schema and steps down "
        "when the endpoint refuses one.",
    )
    random_seed: int = Field(0, description="Base of each request's seed and of seed choice.")
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at once.")
    timeout_seconds: float = Field(180.0, gt=0, description="Per-request timeout.")
    http_retries: int = Field(5, ge=0, le=20, description="Retries after 429/5xx/timeouts.")
    max_attempts: int = Field(
        3, ge=1, le=20, description="Answers asked per dialogue slot before it counts as failed."
    )
    backoff_seconds: float = Field(1.0, ge=0, description="First retry wait; doubles each time.")
    backoff_max_seconds: float = Field(60.0, ge=0, description="Longest wait, Retry-After too.")
    abort_after_endpoint_failures: int = Field(
        5, ge=1, description="Stop the run after this many slots in a row hit endpoint errors."
    )
    budget_usd: float = Field(10.0, ge=0, description="Hard cap on this run directory's spend.")
    price_input_per_mtok: float | None = Field(None, ge=0, description="USD per 1M prompt tokens.")
    price_output_per_mtok: float | None = Field(None, ge=0, description="USD per 1M answer tokens.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig)

    @property
    def is_local(self) -> bool:
        """True when the endpoint is on this machine (it costs nothing unless priced)."""
        if self.base_url is None:
            return False
        host = re.sub(r"^\w+://", "", self.base_url).split("/")[0]
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return host.strip("[]") in LOCAL_HOSTS

    @model_validator(mode="after")
    def _prices(self) -> SynthConfig:
        priced = self.price_input_per_mtok is not None and self.price_output_per_mtok is not None
        if not self.is_local and not priced:
            raise ValueError(
                "price_input_per_mtok and price_output_per_mtok (USD per million tokens) are "
                "required for a remote endpoint, so that budget_usd can be enforced"
            )
        return self

    @property
    def prices(self) -> tuple[float, float]:
        """(input, output) USD per million tokens; a local endpoint without prices is free."""
        return (self.price_input_per_mtok or 0.0, self.price_output_per_mtok or 0.0)

    def run_dir(self) -> Path:
        """The run directory."""
        return Path(self.output_dir or f"runs/synth/{self.name}")


def validate_config(data: dict[str, Any], source: str = "<config>") -> SynthConfig:
    """A dict → SynthConfig, with every problem named by its key in one message."""
    return validate_model(SynthConfig, data, source, "synthesis config", SynthConfigError)


def load_config(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> SynthConfig:
    """Read a TOML config, apply overrides, validate; SynthConfigError on any problem."""
    data = apply_overrides(read_toml(path, SynthConfigError), overrides, SynthConfigError)
    data.setdefault("name", Path(path).stem)
    return validate_config(data, source=str(path))
