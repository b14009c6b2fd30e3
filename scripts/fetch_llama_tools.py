"""Fetch llama.cpp's GGUF conversion scripts from the pinned llama-cpp-python sdist.

`make tools` runs this. It downloads the source distribution of llama-cpp-python (the same
version the bot runs, so the converter and the runtime agree on the GGUF format) with pip, and
extracts only what the converters need into `<dest>/llama.cpp/`:

    convert_hf_to_gguf.py, convert_lora_to_gguf.py   the two scripts the exporter runs
    conversion/                                      the model classes they import
    gguf-py/                                         their own `gguf` package (put first on PYTHONPATH)
    models/templates/                                chat templates some architectures read
    requirements/, LICENSE                           what they need, and under which licence (MIT)

The scripts are never copied into the repository and never imported: the exporter runs them as
subprocesses. Running this again with the same version does nothing (idempotent).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "llama-cpp-python"
VERSION_FILE = ".version"
# Paths inside `<sdist>/vendor/llama.cpp/` that the converters need. A trailing "/" is a folder.
WANTED = (
    "convert_hf_to_gguf.py",
    "convert_lora_to_gguf.py",
    "conversion/",
    "gguf-py/",
    "models/templates/",
    "requirements/",
    "LICENSE",
)
# What must exist afterwards for the tools to count as installed.
REQUIRED = (
    "convert_hf_to_gguf.py",
    "convert_lora_to_gguf.py",
    "conversion/__init__.py",
    "gguf-py/gguf/__init__.py",
    "gguf-py/gguf/gguf_writer.py",
)


class FetchError(RuntimeError):
    """Raised with a message that tells the operator what went wrong and what to do."""


def is_installed(target: Path, version: str) -> bool:
    """True when `target` already holds a complete copy of the tools for `version`."""
    stamp = target / VERSION_FILE
    if not stamp.is_file() or stamp.read_text().strip() != version:
        return False
    return all((target / rel).is_file() for rel in REQUIRED)


def download_sdist(version: str, workdir: Path) -> Path:
    """Download the llama-cpp-python sdist with pip into `workdir`; return the archive path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-binary",
        ":all:",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(workdir),
        f"{PACKAGE}=={version}",
    ]
    # A constraints file pins packages we are not downloading; --no-deps makes it irrelevant.
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}
    print(f"fetch_llama_tools: downloading {PACKAGE}=={version} (sdist) with pip ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    archives = sorted(workdir.glob("*.tar.gz"))
    if proc.returncode != 0 or not archives:
        lines = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        tail = "\n".join(line[:300] for line in lines)
        raise FetchError(
            f"pip could not download the {PACKAGE}=={version} source distribution "
            f"(exit {proc.returncode}). Check that PyPI (or your index) is reachable.\n{tail}"
        )
    return archives[0]


def _wanted_members(archive: tarfile.TarFile) -> tuple[str, list[tarfile.TarInfo]]:
    """Return the `vendor/llama.cpp/` prefix inside the archive and the members to extract."""
    prefix = ""
    for name in archive.getnames():
        marker = "/vendor/llama.cpp/convert_hf_to_gguf.py"
        if name.endswith(marker):
            prefix = name[: -len("convert_hf_to_gguf.py")]
            break
    if not prefix:
        raise FetchError(
            "the sdist has no vendor/llama.cpp/convert_hf_to_gguf.py; this version of "
            f"{PACKAGE} does not carry llama.cpp's conversion scripts"
        )
    members = []
    for member in archive.getmembers():
        if not member.name.startswith(prefix) or not (member.isfile() or member.isdir()):
            continue
        rel = member.name[len(prefix) :]
        if any(rel == w or (w.endswith("/") and rel.startswith(w)) for w in WANTED):
            members.append(member)
    return prefix, members


def extract_tools(sdist: Path, target: Path, version: str) -> int:
    """Extract the wanted files from `sdist` into `target` atomically; return the file count."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".llama.cpp-", dir=target.parent))
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            prefix, members = _wanted_members(archive)
            for member in members:
                member.name = member.name[len(prefix) :]
                if not member.name:
                    continue
                if hasattr(tarfile, "data_filter"):
                    archive.extract(member, staging, filter="data")
                else:  # Python < 3.11.4: names were already checked to stay under prefix
                    archive.extract(member, staging)  # noqa: S202
        missing = [rel for rel in REQUIRED if not (staging / rel).is_file()]
        if missing:
            raise FetchError(f"the sdist lacks files the exporter needs: {', '.join(missing)}")
        (staging / VERSION_FILE).write_text(version + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return sum(1 for m in members if m.isfile())


def fetch(version: str, dest: Path, *, sdist: Path | None = None, force: bool = False) -> Path:
    """Make sure `<dest>/llama.cpp` holds the tools for `version`; return that folder."""
    target = dest / "llama.cpp"
    if not force and is_installed(target, version):
        print(f"fetch_llama_tools: {target} already has llama.cpp tools {version}; nothing to do")
        return target
    with tempfile.TemporaryDirectory(prefix="llama-sdist-") as tmp:
        archive = sdist if sdist is not None else download_sdist(version, Path(tmp))
        if not archive.is_file():
            raise FetchError(f"sdist {archive} does not exist")
        count = extract_tools(archive, target, version)
    print(f"fetch_llama_tools: extracted {count} files from {archive.name} into {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, help="llama-cpp-python version, e.g. 0.3.36")
    parser.add_argument("--dest", type=Path, default=Path(".tools"), help="tools folder")
    parser.add_argument("--sdist", type=Path, help="use this downloaded sdist instead of pip")
    parser.add_argument("--force", action="store_true", help="fetch again even if present")
    args = parser.parse_args(argv)
    try:
        fetch(args.version, args.dest, sdist=args.sdist, force=args.force)
    except (FetchError, OSError, tarfile.TarError) as exc:
        print(f"fetch_llama_tools: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
