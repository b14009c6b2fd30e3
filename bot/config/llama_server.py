"""The `[llama_server]` section: llama.cpp's server as `solace serve`'s managed child process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from bot.config.sections import _Section


class LlamaServerSettings(_Section):
    """llama.cpp's native `llama-server`, which `solace serve` runs as a managed child process
    (model.backend = "llama-server"; docs/production.md). Model, adapter, per-slot context
    (`model.n_ctx`), threads and prompt-cache RAM (`model.cache_mb`) come from `[model]`."""

    binary: Path | None = Field(
        None,
        description="The llama-server executable; empty = the one `make llama-server` built "
        "(~/.cache/solace/bin/llama-server-<version>), else `llama-server` on PATH.",
    )
    parallel: int = Field(
        8, ge=1, le=64, description="Slots: conversations generated at once (continuous batching)."
    )
    port: int = Field(0, ge=0, le=65535, description="Port on 127.0.0.1; 0 = a free one.")
    missing_binary: Literal["embedded", "refuse"] = Field(
        "embedded",
        description="When the binary is missing or does not run: embedded = warn once and use "
        "the in-process model; refuse = stop with an error.",
    )
    pin_slots: bool = Field(
        True,
        description="Send each conversation back to the slot that holds its prompt prefix "
        "when that slot is free (id_slot), so its KV cache is reused.",
    )
    startup_timeout_seconds: float = Field(
        120.0, gt=0, le=3600, description="Give up when /health is not ok after this long."
    )
    request_timeout_seconds: float = Field(
        60.0, gt=0, le=3600, description="A request waiting this long for data fails kindly."
    )
    restart_wait_seconds: float = Field(
        15.0, ge=0, le=600, description="A message waits this long for a restarting server."
    )
    restart_backoff_seconds: float = Field(
        1.0, gt=0, le=600, description="First restart delay after a crash; doubles per crash."
    )
    restart_backoff_max_seconds: float = Field(
        30.0, gt=0, le=3600, description="Longest restart delay."
    )
    watchdog_interval_seconds: float = Field(
        10.0, gt=0, le=600, description="How often the server's scheduler is probed (/slots)."
    )
    watchdog_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=600,
        description="A probe unanswered this long: the server is hung and is restarted.",
    )
    extra_args: tuple[str, ...] = Field(
        (), description='More llama-server arguments, e.g. ["--cache-type-k", "q8_0"].'
    )
