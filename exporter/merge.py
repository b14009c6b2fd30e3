"""Merge a peft LoRA adapter into its base and save a plain safetensors model + tokenizer.

The base is always loaded in 16/32-bit: merging into a 4-bit (QLoRA) base would bake the
quantization error into every merged weight, so a quantized base is refused.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exporter.config import ExportError

logger = logging.getLogger(__name__)

MERGE_DTYPES = ("float32", "bfloat16", "float16")
COMPLETE_MARKER = ".complete"


# transformers writes quantization_config {"quant_method": "gguf"} into the config of a model it
# loaded (and dequantized) from a GGUF file; the weights saved from it are plain floats.
DEQUANTIZED_METHODS = ("gguf",)


def base_quant_method(base_hf_dir: Path) -> str | None:
    """The `quantization_config.quant_method` in a model's config.json, or None."""
    config = json.loads((base_hf_dir / "config.json").read_text(encoding="utf-8"))
    quant = config.get("quantization_config")
    if not quant:
        return None
    return str(quant.get("quant_method", "unknown")) if isinstance(quant, dict) else str(quant)


def check_base_precision(base_hf_dir: Path) -> None:
    """Refuse a base saved with a quantization config (bitsandbytes 4/8-bit, GPTQ, ...)."""
    method = base_quant_method(base_hf_dir)
    if method is not None and method not in DEQUANTIZED_METHODS:
        raise ExportError(
            f"base {base_hf_dir} is quantized ({method}); merge into the 16/32-bit base "
            "instead (for a QLoRA run, point base_model.hf_dir at the unquantized model)"
        )


def plain_config(base_hf_dir: Path) -> Any:
    """The base's config without a leftover GGUF quantization_config (weights are floats)."""
    from transformers import AutoConfig

    check_base_precision(base_hf_dir)
    config = AutoConfig.from_pretrained(str(base_hf_dir), local_files_only=True)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    return config


def converter_base_dir(base_hf_dir: Path, work_dir: Path) -> Path:
    """A directory llama.cpp's converters accept as the base: the base itself, or a copy of its
    small files with the GGUF quantization_config removed (the converters reject it)."""
    if base_quant_method(base_hf_dir) is None:
        return base_hf_dir
    out = work_dir / "base-config"
    out.mkdir(parents=True, exist_ok=True)
    for item in base_hf_dir.iterdir():
        if item.is_file() and item.suffix in (".json", ".jinja", ".model", ".txt"):
            shutil.copyfile(item, out / item.name)
    config = json.loads((base_hf_dir / "config.json").read_text(encoding="utf-8"))
    config.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out


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
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(base_hf_dir),
        config=plain_config(base_hf_dir),
        dtype=getattr(torch, dtype),
        local_files_only=True,
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
    if _save_once(
        out_dir,
        tokenizer,
        "merged",
        lambda: load_model(base_hf_dir, adapter_dir, dtype, merge=True),
    ):
        logger.info("merged adapter into %s", out_dir)
    return out_dir


def copy_model(model_dir: Path, tokenizer: Any, out_dir: Path, dtype: str = "float32") -> Path:
    """A full fine-tune's model saved like a merge (safetensors + tokenizer, `.complete`
    marker): nothing to merge, the converter reads `out_dir` as for a LoRA run."""
    _save_once(
        out_dir,
        tokenizer,
        "full fine-tune",
        lambda: load_model(model_dir, None, dtype, merge=False),
    )
    return out_dir


def _save_once(out_dir: Path, tokenizer: Any, what: str, load: Callable[[], Any]) -> bool:
    """Save `load()`'s model and the tokenizer to `out_dir` through a sibling `.part` directory,
    marked complete last; False (nothing done) when `out_dir` is already complete."""
    if (out_dir / COMPLETE_MARKER).is_file():
        return False
    tmp = out_dir.with_name(out_dir.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    load().save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / COMPLETE_MARKER).write_text(what + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return True


def dir_size_bytes(path: Path, pattern: str = "*.safetensors") -> int:
    """Total size of the files matching `pattern` in a directory (0 if none)."""
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


def param_bytes_f32(base_hf_dir: Path) -> int:
    """Rough size of the base's weights in float32 (for disk-space estimates)."""
    config = json.loads((base_hf_dir / "config.json").read_text(encoding="utf-8"))
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    stored = dir_size_bytes(base_hf_dir) or dir_size_bytes(base_hf_dir, "*.bin")
    return stored * (2 if dtype in ("bfloat16", "float16") else 1)
