"""GGUF files: llama.cpp's converters (as subprocesses), metadata surgery and quantization.

The converters come from the pinned llama-cpp-python sdist (`make tools` puts them under
`.tools/llama.cpp/`); they are run with `[sys.executable, script, ...]` and their own `gguf-py`
first on `PYTHONPATH`, never imported. Metadata is read and rewritten in-process with the `gguf`
package (gguf-py from PyPI); quantization calls `llama_cpp.llama_model_quantize`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from exporter.config import ExportError

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOOLS_ENV = "SOLACE_LLAMA_TOOLS"
DEFAULT_TOOLS_DIR = PROJECT_ROOT / ".tools" / "llama.cpp"
CONVERT_HF_SCRIPT = "convert_hf_to_gguf.py"
CONVERT_LORA_SCRIPT = "convert_lora_to_gguf.py"
LOG_TAIL_LINES = 15
# Tokenizer keys that decide how text becomes token ids (the chat template is handled apart).
TOKENIZER_PREFIX = "tokenizer."
CHAT_TEMPLATE_KEY = "tokenizer.chat_template"


def tools_dir() -> Path:
    """Where llama.cpp's scripts live: $SOLACE_LLAMA_TOOLS or `.tools/llama.cpp`."""
    value = os.environ.get(TOOLS_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_TOOLS_DIR


def require_tool(script: str) -> Path:
    """Path of a llama.cpp script; ExportError telling the user to run `make tools` if absent."""
    root = tools_dir()
    path = root / script
    if not path.is_file() or not (root / "gguf-py" / "gguf" / "__init__.py").is_file():
        raise ExportError(
            f"llama.cpp converter {script} not found in {root}. Run `make tools` (it fetches "
            "the scripts from the pinned llama-cpp-python sdist), or set "
            f"{TOOLS_ENV} to a llama.cpp checkout."
        )
    return path


def run_tool(script: str, args: list[str], log_path: Path) -> None:
    """Run a llama.cpp script in a subprocess; its output goes to `log_path`."""
    path = require_tool(script)
    gguf_py = str(path.parent / "gguf-py")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (gguf_py, env.get("PYTHONPATH", "")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.run(
            [sys.executable, str(path), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=path.parent,
            check=False,
        )
    if proc.returncode != 0:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        tail = "\n".join(lines[-LOG_TAIL_LINES:])
        raise ExportError(
            f"{script} failed (exit {proc.returncode}); full log in {log_path}:\n{tail}"
        )


def convert_hf(hf_dir: Path, out_path: Path, outtype: str, log_path: Path) -> Path:
    """HF safetensors directory → GGUF (`convert_hf_to_gguf.py --outtype`), written atomically."""
    tmp = out_path.with_name(out_path.name + ".part")
    run_tool(
        CONVERT_HF_SCRIPT,
        [str(hf_dir.resolve()), "--outfile", str(tmp.resolve()), "--outtype", outtype],
        log_path,
    )
    tmp.replace(out_path)
    return out_path


def convert_lora(
    adapter_dir: Path, base_hf_dir: Path, out_path: Path, outtype: str, log_path: Path
) -> Path:
    """peft adapter directory → GGUF LoRA (`convert_lora_to_gguf.py --base`), atomically."""
    tmp = out_path.with_name(out_path.name + ".part")
    run_tool(
        CONVERT_LORA_SCRIPT,
        [
            str(adapter_dir.resolve()),
            "--base",
            str(base_hf_dir.resolve()),
            "--outfile",
            str(tmp.resolve()),
            "--outtype",
            outtype,
        ],
        log_path,
    )
    tmp.replace(out_path)
    return out_path


def read_metadata(path: Path, prefix: str = "") -> dict[str, Any]:
    """GGUF key/value metadata whose keys start with `prefix`, as Python values."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path), "r")
    return {
        name: field.contents()
        for name, field in reader.fields.items()
        if name.startswith(prefix) and not name.startswith("GGUF.")
    }


def _raw_fields(path: Path, prefix: str) -> dict[str, bytes]:
    """Fields under `prefix` as their raw bytes (fast exact comparison of 50k-token arrays)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path), "r")
    return {
        name: b"".join(part.tobytes() for part in field.parts)
        for name, field in reader.fields.items()
        if name.startswith(prefix)
    }


def tokenizer_differences(converted: Path, base: Path) -> list[str]:
    """Tokenizer keys (chat template aside) whose values differ between two GGUF files."""
    a = _raw_fields(converted, TOKENIZER_PREFIX)
    b = _raw_fields(base, TOKENIZER_PREFIX)
    keys = (set(a) | set(b)) - {CHAT_TEMPLATE_KEY}
    return sorted(k for k in keys if a.get(k) != b.get(k))


def rewrite_metadata(
    src: Path,
    dst: Path,
    *,
    tokenizer_from: Path | None = None,
    set_strings: dict[str, str] | None = None,
) -> None:
    """Copy a GGUF to `dst` (atomically), optionally replacing all `tokenizer.*` keys with
    those of `tokenizer_from` and setting string keys (e.g. the chat template)."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(str(src), "r")
    arch = reader.get_field("general.architecture")
    if arch is None:
        raise ExportError(f"{src} has no general.architecture; not a model GGUF")
    donor = GGUFReader(str(tokenizer_from), "r") if tokenizer_from is not None else None
    strings = dict(set_strings or {})
    tmp = dst.with_name(dst.name + ".part")
    writer = GGUFWriter(str(tmp), arch.contents(), endianess=reader.endianess)
    fields = list(reader.fields.values())
    if donor is not None:
        fields = [f for f in fields if not f.name.startswith(TOKENIZER_PREFIX)]
        fields += [f for f in donor.fields.values() if f.name.startswith(TOKENIZER_PREFIX)]
    for field in fields:
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        if field.name in strings:
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), val_type, sub_type=sub_type)
    for key, value in strings.items():
        writer.add_key_value(key, value, GGUFValueType.STRING)
    for tensor in reader.tensors:
        writer.add_tensor_info(
            tensor.name,
            tensor.data.shape,
            tensor.data.dtype,
            tensor.data.nbytes,
            tensor.tensor_type,
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    tmp.replace(dst)


def quantize(src: Path, dst: Path, qtype: str, n_threads: int | None = None) -> Path:
    """Quantize a GGUF with `llama_cpp.llama_model_quantize` (Q8_0, Q4_K_M, ...), atomically."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype.upper()}", None)
    if ftype is None:
        raise ExportError(f"llama.cpp has no quantization type {qtype!r}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = n_threads or 0  # 0 = llama.cpp picks the hardware concurrency
    tmp = dst.with_name(dst.name + ".part")
    status = llama_cpp.llama_model_quantize(
        str(src).encode("utf-8"), str(tmp).encode("utf-8"), params
    )
    if status != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ExportError(f"llama_model_quantize({src.name} → {qtype}) failed with status {status}")
    tmp.replace(dst)
    return dst


def gguf_file_type(path: Path) -> str:
    """The GGUF's `general.file_type` as a short llama.cpp name (e.g. "Q4_1"), or "unknown"."""
    import llama_cpp

    value = read_metadata(path, "general.file_type").get("general.file_type")
    names = {
        getattr(llama_cpp, n): n.removeprefix("LLAMA_FTYPE_")
        for n in dir(llama_cpp)
        if n.startswith("LLAMA_FTYPE_")
    }
    name = names.get(value, "unknown") if value is not None else "unknown"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")
