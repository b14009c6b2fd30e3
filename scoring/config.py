"""The scorers' settings: the LLM judge's endpoint, budget and sampling, the toxicity scorer.

`solace eval` reads them from the `[judge]` and `[toxicity]` sections of an eval config; the bot's
audit jobs build them from their `jobs.judge_*` and `jobs.toxicity_*` settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JudgeConfig(_Section):
    """The LLM judge (`solace eval judge`, the audit judge job)."""

    base_url: str | None = Field(None, description="OpenAI-compatible URL; None: api.openai.com.")
    model: str = Field("gpt-4o", description="Judge model name.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable with the key.")
    samples: int = Field(1, ge=1, le=20, description="Judgements per item (mean and spread).")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Judge temperature.")
    max_tokens: int = Field(300, ge=16, description="Judge answer length cap.")
    max_retries: int = Field(3, ge=0, le=10, description="Re-asks after a malformed answer.")
    timeout_seconds: float = Field(60.0, gt=0, description="Per-request timeout.")
    concurrency: int = Field(4, ge=1, le=64, description="Requests in flight.")
    json_mode: bool = Field(
        True, description="Send response_format=json_object (servers that lack it: false)."
    )
    cache_path: str | None = Field(None, description="SQLite response cache (default: in RUN).")
    budget_usd: float = Field(5.0, ge=0, description="Refuse to start above this estimate.")
    price_input_per_mtok: float = Field(2.5, ge=0, description="USD per 1M prompt tokens.")
    price_output_per_mtok: float = Field(10.0, ge=0, description="USD per 1M answer tokens.")
    max_dialogues: int | None = Field(None, ge=1, description="Judge at most this many.")


class ToxicityConfig(_Section):
    """Toxicity scoring (`solace eval toxicity`, the audit toxicity job)."""

    scorer: Literal["auto", "perspective", "detoxify", "lexicon"] = Field(
        "auto",
        description="auto: Perspective if a key is set, Detoxify if a checkpoint is, "
        "else the offline lexicon scorer.",
    )
    perspective_api_key_env: str = Field(
        "PERSPECTIVE_API_KEY", description="Environment variable holding the Perspective key."
    )
    perspective_url: str = Field(
        "https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze",
        description="Perspective endpoint (tests point it at a local server).",
    )
    perspective_qps: float = Field(1.0, gt=0, description="Perspective's default quota is 1 QPS.")
    detoxify_checkpoint: str | None = Field(None, description="Local Detoxify .ckpt file.")
    detoxify_model: Literal["original", "unbiased", "multilingual"] = Field(
        "original", description="Detoxify model type the checkpoint belongs to."
    )
    lexicon_path: str | None = Field(None, description="Own lexicon JSON (default: shipped one).")
