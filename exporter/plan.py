"""`Plan`: what every export step reads — the training run, the config, the output folder and
the base GGUF. Its own module so the steps (`pipeline`), the checks (`gates`) and the card
(`card`) can all use it without importing each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.config import ExportConfig, RunManifest

Echo = Callable[[str], None]


@dataclass
class Plan:
    """Everything the steps need: the run, the config, where outputs go, the base GGUF."""

    run: RunManifest
    cfg: ExportConfig
    out_dir: Path
    base_gguf: Path | None
    base_gguf_ref: str | None
    echo: Echo = print
    results: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        """A path inside the output directory."""
        return self.out_dir / name

    def gguf_name(self, kind: str) -> str:
        """File name of the full-model GGUF of a kind (F16, Q8_0, ...)."""
        return f"model-{kind.upper()}.gguf"
