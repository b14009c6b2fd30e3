"""The `[safety]` section: the crisis screen (rules, semantic layer) and the reply guard."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from bot.config.sections import _Section


class SafetySettings(_Section):
    """Crisis screen and reply guard (owned by the safety area)."""

    default_country: str | None = Field(
        None, description="ISO country for crisis resources when the user has not set one."
    )
    llm_classifier: bool = Field(
        False,
        description="Ask the backend for a second opinion on messages the pattern screen "
        "passes (only when the backend serves requests in parallel); it can only raise the level.",
    )
    classifier_timeout_seconds: float = Field(
        20.0, gt=0, le=300, description="Give up on the LLM second opinion after this long."
    )
    hotlines_path: Path | None = Field(
        None,
        description="Your own hotline table (JSON, same format as bot/safety/data/hotlines.json).",
    )
    semantic: bool = Field(
        True,
        description="Run the learned semantic layer beside the rules (all-MiniLM-L6-v2 GGUF "
        "+ classifier); if it cannot load, the rules run alone and `solace health` says so.",
    )
    encoder_path: Path | None = Field(
        None, description="The encoder GGUF (default made by `make encoder` in models/encoder/)."
    )
    semantic_classifier_path: Path | None = Field(
        None,
        description="The classifier artifact (default bot/safety/data/semantic_classifier.json).",
    )
    encoder_threads: int = Field(
        1, ge=1, le=16, description="CPU threads for the encoder (one is fastest on 2 cores)."
    )
