"""Merge a peft LoRA adapter into its base and save a plain safetensors model + tokenizer.

The base is always loaded in 16/32-bit: merging into a 4-bit (QLoRA) base would bake the
quantization error into every merged weight, so a quantized base is refused.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from exporter.config import ExportError

logger = logging.getLogger(__name__)

MERGE_DTYPES = ("float32", "bfloat16", "float16")
COMPLETE_MARKER = ".complete"


def check_base_precision(base_hf_dir: Path) -> None:
    """Refuse a base saved with a quantization config (bitsandbytes 4/8-bit, GPTQ, ...)."""
    config = json.loads((base_hf_dir / "config.json").read_text(encoding="utf-8"))
    quant = config.get("quantization_config")
    if quant:
        method = quant.get("quant_method", "unknown") if isinstance(quant, dict) else quant
        raise ExportError(
            f"base {base_hf_dir} is quantized ({method}); merge into the 16/32-bit base "
            "instead (for a QLoRA run, point base_model.hf_dir at the unquantized model)"
        )


def load_tokenizer(tokenizer_dir: Path, chat_template: str | None = None) -> Any:
    """The run's tokenizer, with the manifest's chat template when one is given."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def load_model(
    base_hf_dir: Path, adapter_dir: Path | None, dtype: str = "float32", merge: bool = True
) -> Any:
    """Load the base in `dtype` (never 4-bit) and, with an adapter, apply it (merged or not)."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in MERGE_DTYPES:
        raise ExportError(f"merge dtype {dtype!r} is not one of {MERGE_DTYPES}")
    check_base_precision(base_hf_dir)
    model = AutoModelForCausalLM.from_pretrained(
        str(base_hf_dir), dtype=getattr(torch, dtype), local_files_only=True
    )
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model


def merge_adapter(
    base_hf_dir: Path,
    adapter_dir: Path,
    tokenizer: Any,
    out_dir: Path,
    dtype: str = "float32",
) -> Path:
    """Merge `adapter_dir` into the base and save safetensors + tokenizer to `out_dir`.

    Written to a sibling `.part` directory first, so an interrupted merge never leaves a
    directory that looks finished. Returns `out_dir`.
    """
    if (out_dir / COMPLETE_MARKER).is_file():
        return out_dir
    tmp = out_dir.with_name(out_dir.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    model = load_model(base_hf_dir, adapter_dir, dtype, merge=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / COMPLETE_MARKER).write_text("merged\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    logger.info("merged adapter into %s", out_dir)
    return out_dir


def dir_size_bytes(path: Path, pattern: str = "*.safetensors") -> int:
    """Total size of the files matching `pattern` in a directory (0 if none)."""
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


def param_bytes_f32(base_hf_dir: Path) -> int:
    """Rough size of the base's weights in float32 (for disk-space estimates)."""
    config = json.loads((base_hf_dir / "config.json").read_text(encoding="utf-8"))
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    stored = dir_size_bytes(base_hf_dir) or dir_size_bytes(base_hf_dir, "*.bin")
    return stored * (2 if dtype in ("bfloat16", "float16") else 1)
