"""`ExportConfig` (every knob of an export, from `configs/export/*.toml`) and the run manifest.

Frozen pydantic models with `extra="forbid"`: a misspelt key is an error, not a silent default.
Nothing here imports torch or llama_cpp.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.configfile import ConfigFileError, apply_overrides, read_toml, validate_model

# Quantization types offered; each maps to llama.cpp's `LLAMA_FTYPE_MOSTLY_<NAME>`.
QUANT_TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q5_1", "Q5_0", "Q4_K_M", "Q4_1", "Q4_0")
# What the converter itself can write (convert_hf_to_gguf.py --outtype).
CONVERT_OUTTYPES = ("f32", "f16", "bf16")
# Relative perplexity increase (GGUF vs the HF model) allowed before the export refuses to
# finish. Lossless-ish formats get tight bounds; 4-bit formats lose real precision on a 135M
# model, so their bounds are wide but still catch a broken conversion (which is off by 10x).
# ADAPTER = the LoRA GGUF on top of the (possibly quantized) base GGUF.
DEFAULT_MAX_PPL_INCREASE: dict[str, float] = {
    "F32": 0.005,
    "F16": 0.01,
    "BF16": 0.03,
    "Q8_0": 0.03,
    "Q6_K": 0.05,
    "Q5_K_M": 0.10,
    "Q5_1": 0.10,
    "Q5_0": 0.12,
    "Q4_K_M": 0.25,
    "Q4_1": 0.30,
    "Q4_0": 0.35,
    "ADAPTER": 0.05,
}


class ExportConfigError(ConfigFileError):
    """An export config that cannot be used; the message names the file and keys."""


class ExportError(RuntimeError):
    """An export step failed; the message says what is wrong and what to do."""


class ParityError(ExportError):
    """The exported model does not behave like the trained one (beyond the thresholds)."""


class ExportConfig(BaseModel):
    """One export. Every field is documented in docs/export.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- what to produce -------------------------------------------------------------------
    adapter_only: bool = Field(
        False,
        description="Write only a GGUF LoRA (convert_lora_to_gguf.py) that the bot applies on "
        "top of the base GGUF; no merge, no full model.",
    )
    quants: tuple[str, ...] = Field(
        ("Q8_0", "Q4_K_M"), description=f"Quantized GGUFs to write from the f16 one: {QUANT_TYPES}."
    )
    default_quant: str | None = Field(
        None, description="The GGUF the bot should load; None = the last of `quants` (or f16)."
    )
    outtype: Literal["f32", "f16", "bf16"] = Field(
        "f16", description="Precision of the converted (unquantized) GGUF."
    )
    adapter_outtype: Literal["f32", "f16", "bf16"] = Field(
        "f32", description="Precision of the GGUF LoRA (tiny, so f32 costs little)."
    )
    merge_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype the base is loaded in for merging; never 4-bit."
    )
    base_gguf: str | None = Field(
        None,
        description="Base GGUF (path or 'pkg:<package>/<file.gguf>') for tokenizer parity, "
        "adapter-only verification and the base-vs-tuned comparison; None = from the manifest.",
    )
    copy_base_tokenizer: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Carry the base GGUF's tokenizer.* metadata into the converted GGUF: auto = "
        "only when the converted tokenizer differs.",
    )

    # --- verification ----------------------------------------------------------------------
    verify: bool = Field(True, description="Run the parity checks (needed to finish).")
    eval_spec: str = Field(
        "esconv:test", description="Held-out dialogues (dialogue.datasets spec or file)."
    )
    eval_dialogues: int = Field(16, ge=1, description="Dialogues used for perplexity.")
    eval_max_tokens: int = Field(
        384, ge=32, description="Tokens per scored dialogue (whole turns, oldest first)."
    )
    tokenization_texts: int = Field(
        200, ge=1, description="Utterances (plus rendered chats) checked for identical tokens."
    )
    greedy_prompts: int = Field(4, ge=1, description="Prompts for greedy-continuation agreement.")
    greedy_tokens: int = Field(24, ge=1, description="Greedy tokens generated per prompt.")
    max_ppl_increase: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_PPL_INCREASE),
        description="Allowed relative perplexity increase vs HF, per GGUF kind.",
    )
    min_greedy_agreement: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Least mean greedy-prefix agreement for F32/F16/BF16 and the adapter "
        "(quantized files are reported, not gated).",
    )
    compare_base: bool = Field(
        True, description="Also score the base GGUF alone (is the tuned model better?)."
    )
    bench_tokens: int = Field(64, ge=8, description="Tokens generated for the tokens/s column.")

    # --- resources -------------------------------------------------------------------------
    n_threads: int | None = Field(None, ge=1, description="CPU threads; None = all usable.")
    n_ctx: int = Field(1024, ge=128, description="llama.cpp context for verification.")
    disk_margin: float = Field(
        1.3, ge=1.0, description="Free disk needed = estimated output size × this."
    )

    @model_validator(mode="after")
    def _check_cross_fields(self) -> ExportConfig:
        """Cross-field checks; each error names the keys involved."""
        unknown = [q for q in self.quants if q not in QUANT_TYPES]
        if unknown:
            raise ValueError(f"quants: unknown type(s) {unknown}; choose from {QUANT_TYPES}")
        if len(set(self.quants)) != len(self.quants):
            raise ValueError(f"quants: duplicates in {list(self.quants)}")
        if self.default_quant is not None and self.default_quant not in (
            *self.quants,
            self.outtype.upper(),
        ):
            raise ValueError(
                f"default_quant {self.default_quant!r} is neither in quants {list(self.quants)} "
                f"nor the outtype {self.outtype.upper()!r}"
            )
        bad = [k for k, v in self.max_ppl_increase.items() if v < 0]
        if bad:
            raise ValueError(f"max_ppl_increase: negative bound(s) for {bad}")
        return self

    def ppl_bound(self, kind: str) -> float:
        """Allowed relative perplexity increase for a GGUF kind (F16, Q8_0, ADAPTER, ...)."""
        merged = {**DEFAULT_MAX_PPL_INCREASE, **self.max_ppl_increase}
        return merged.get(kind.upper(), 0.5)

    def chosen_gguf_kind(self) -> str:
        """The kind of GGUF the bot should load from a full export."""
        if self.default_quant:
            return self.default_quant
        return self.quants[-1] if self.quants else self.outtype.upper()


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> ExportConfig:
    """Read a TOML config (or the defaults), apply `key=value` overrides, validate."""
    data = read_toml(path, ExportConfigError) if path is not None else {}
    data = apply_overrides(data, overrides, ExportConfigError)
    return validate_config(data, str(path) if path is not None else "<defaults>")


def validate_config(data: dict[str, Any], source: str = "<config>") -> ExportConfig:
    """Validate a dict into an ExportConfig with one readable message on failure."""
    return validate_model(ExportConfig, data, source, "export config", ExportConfigError)


class RunManifest(BaseModel):
    """The parts of a training run's `manifest.json` the exporter reads."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_dir: Path
    raw: dict[str, Any]
    base_id: str
    base_hf_dir: Path
    base_gguf: str | None
    adapter_dir: Path | None  # None for a full fine-tune
    tokenizer_dir: Path
    chat_template: str | None
    context_representation: str
    strategy_conditioning: str
    method: str = "lora"
    model_dir: Path | None = None  # a full fine-tune's whole model (safetensors)

    @property
    def weights_dir(self) -> Path:
        """Where the trained weights are: the adapter, or a full fine-tune's model."""
        found = self.model_dir or self.adapter_dir
        if found is None:  # read_run_manifest never builds one without weights
            raise ValueError(f"{self.run_dir}: the manifest names no trained weights")
        return found


def resolve_ref(ref: str, relative_to: Path | None = None) -> Path:
    """Resolve a model reference: a path, or 'pkg:<package>/<file>' inside an installed package."""
    if ref.startswith("pkg:"):
        package, _, name = ref[4:].partition("/")
        spec = importlib.util.find_spec(package) if package else None
        if spec is None or not spec.submodule_search_locations or not name:
            raise FileNotFoundError(f"{ref}: package {package!r} is not installed")
        for location in spec.submodule_search_locations:
            if (Path(location) / name).is_file():
                return Path(location) / name
        raise FileNotFoundError(f"{ref}: {name!r} is not inside package {package!r}")
    path = Path(ref).expanduser()
    if not path.is_absolute() and relative_to is not None and (relative_to / path).exists():
        return relative_to / path
    return path


def read_run_manifest(run_dir: Path) -> RunManifest:
    """Read and check a training run's manifest; ValueError listing everything that is missing."""
    path = run_dir / "manifest.json"
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    if not path.is_file():
        raise ValueError(
            f"{run_dir} has no manifest.json: it is not a finished training run "
            "(run `solace train CONFIG` first, or point at the run's output directory)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object")
    base = raw.get("base_model") or {}
    artifacts = raw.get("artifacts") or {}
    problems = []
    if raw.get("stage") not in (None, "train"):
        problems.append(f"stage is {raw.get('stage')!r}, expected 'train'")
    method = str(raw.get("method") or "lora")
    if method == "adaption_prompt":
        problems.append(
            "method is 'adaption_prompt' (LLaMA-Adapter): llama.cpp has no such adapter, so "
            "there is no GGUF to write; evaluate the run itself with `solace eval generate "
            f"--model {run_dir}` (the transformers backend)"
        )
    hf_ref = base.get("hf_dir") or base.get("id_or_path")
    hf_dir = resolve_ref(str(hf_ref), run_dir) if hf_ref else None
    adapter_dir: Path | None = None
    model_dir: Path | None = None
    if method == "full":
        model_dir = run_dir / str(artifacts.get("model_dir", "model"))
        if not (model_dir / "config.json").is_file():
            problems.append(f"model {model_dir} has no config.json (a full fine-tune's weights)")
        if hf_dir is None or not (hf_dir / "config.json").is_file():
            hf_dir = model_dir  # the base is only needed for an adapter
    else:
        adapter_dir = run_dir / str(artifacts.get("adapter_dir", "adapter"))
        if not (adapter_dir / "adapter_config.json").is_file():
            problems.append(
                f"adapter {adapter_dir} has no adapter_config.json (peft save_pretrained)"
            )
    if hf_dir is None or not (hf_dir / "config.json").is_file():
        problems.append(f"base_model.hf_dir {hf_ref!r} is not a Hugging Face model directory")
    weights = model_dir or adapter_dir or run_dir
    tok_dir = _tokenizer_dir(run_dir, artifacts, weights, hf_dir)
    if tok_dir is None:
        problems.append("no tokenizer (artifacts.tokenizer_dir, the adapter dir or the base)")
    if problems or hf_dir is None or tok_dir is None:
        raise ValueError(f"{path}: cannot export this run:\n  " + "\n  ".join(problems))
    return RunManifest(
        run_dir=run_dir,
        raw=raw,
        base_id=str(base.get("id_or_path") or hf_dir),
        base_hf_dir=hf_dir,
        base_gguf=base.get("gguf"),
        adapter_dir=adapter_dir,
        tokenizer_dir=tok_dir,
        chat_template=raw.get("chat_template"),
        context_representation=str(raw.get("context_representation") or "raw"),
        strategy_conditioning=str(raw.get("strategy_conditioning") or "none"),
        method=method,
        model_dir=model_dir,
    )


def _tokenizer_dir(
    run_dir: Path, artifacts: dict[str, Any], adapter_dir: Path, hf_dir: Path | None
) -> Path | None:
    """The run's tokenizer: artifacts.tokenizer_dir, else the adapter dir, else the base."""
    candidates = []
    if artifacts.get("tokenizer_dir"):
        candidates.append(run_dir / str(artifacts["tokenizer_dir"]))
    candidates += [adapter_dir, run_dir / "tokenizer"]
    if hf_dir is not None:
        candidates.append(hf_dir)
    for cand in candidates:
        if (cand / "tokenizer.json").is_file() or (cand / "tokenizer_config.json").is_file():
            return cand
    return None
