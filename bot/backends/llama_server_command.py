"""How llama-server is found and what command line it gets
(bot/backends/llama_server_process.py runs it).

- `find_binary`: the executable (`llama_server.binary`, else what `make llama-server` built into
  ~/.cache/solace/bin/, else `llama-server` on PATH); `binary_version` checks that it runs.
- `ServerCommand.argv`: its flags from the settings. `solace serve` runs it as a child process,
  and `python -m bot.backends.llama_server_command` execs the very same command for the compose
  `cpu` profile and a systemd model-server unit (deploy/llama-server.sh), so both serve alike.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.backends.model_files import openmp_env
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.config import Settings

MODEL_ALIAS = "solace"
HOST = "127.0.0.1"
LLAMA_CPP_DIST = "llama-cpp-python"
BINARY_NAME = "llama-server"
VERSION_TIMEOUT_SECONDS = 20.0
# Variables passed to the child. Nothing else: not the bot's tokens or secrets, and no stray
# LLAMA_ARG_* that would silently change the server's flags.
# (How its OpenMP threads wait is child_env's openmp_env.)
CHILD_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OMP_NUM_THREADS")


def cache_link(version: str | None = None) -> Path:
    """Where `make llama-server` links the binary for this llama-cpp-python version."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "solace" / "bin" / f"{BINARY_NAME}-{version or _pinned_version()}"


def _pinned_version() -> str:
    try:
        return metadata.version(LLAMA_CPP_DIST)
    except metadata.PackageNotFoundError:
        return "unknown"


def find_binary(configured: Path | None) -> Path | None:
    """The llama-server to run: the configured path, the cached build, or PATH; None if none."""
    if configured is not None:
        return Path(configured) if Path(configured).is_file() else None
    link = cache_link()
    if link.is_file():
        return link
    found = shutil.which(BINARY_NAME)
    return Path(found) if found else None


def binary_version(binary: Path) -> str:
    """`llama-server --version`'s first line; raises ConfigError when it does not run."""
    try:
        proc = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_SECONDS,
            env=child_env(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{binary} does not run: {type(exc).__name__}: {exc}") from exc
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    if proc.returncode != 0:
        raise ConfigError(f"{binary} --version failed (exit {proc.returncode}): {lines[-1:]}")
    return next((line for line in lines if line.startswith("version")), lines[0] if lines else "")


@dataclasses.dataclass(frozen=True)
class ServerCommand:
    """What to run: every value that goes on llama-server's command line."""

    binary: Path
    model: Path
    lora: Path | None
    parallel: int
    ctx_per_slot: int
    threads: int | None
    cache_mb: int
    flash_attn: bool = False
    omp_spin_count: int = 0  # not a flag: how the child's OpenMP threads wait (child_env)
    extra_args: tuple[str, ...] = ()

    def argv(self, host: str, port: int) -> list[str]:
        """The command line; the API key goes in the environment, never here (ps shows argv)."""
        args = [
            str(self.binary),
            *("--model", str(self.model)),
            *("--alias", MODEL_ALIAS),
            *("--host", host, "--port", str(port)),
            *("--parallel", str(self.parallel)),
            # -c is the whole KV cache; llama-server splits it evenly, one part per slot.
            *("--ctx-size", str(self.parallel * self.ctx_per_slot)),
            # Host RAM for prompts of conversations whose slot went to someone else (0 = off).
            *("--cache-ram", str(self.cache_mb)),
            # Always explicit: llama-server's default (auto) turns flash attention on on CPU,
            # llama-cpp-python's leaves it off, and its F16 arithmetic changes greedy replies.
            *("--flash-attn", "on" if self.flash_attn else "off"),
            *("--slots", "--metrics", "--no-webui", "--offline"),
        ]
        if self.threads is not None:
            args += ["--threads", str(self.threads), "--threads-batch", str(self.threads)]
        if self.lora is not None:
            args += ["--lora", str(self.lora)]
        return [*args, *self.extra_args]


def server_command(settings: Settings, binary: Path) -> ServerCommand:
    """The command for these settings (model and adapter resolved as the embedded backend does)."""
    from bot.backends.llama_cpp import model_files

    model, lora = model_files(settings)
    for label, path in (("model", model), ("LoRA adapter", lora)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{label} file {path} does not exist")
    m, ls = settings.model, settings.llama_server
    return ServerCommand(
        binary=binary,
        model=model,
        lora=lora,
        parallel=ls.parallel,
        ctx_per_slot=m.n_ctx,
        threads=m.n_threads,
        cache_mb=m.cache_mb,
        flash_attn=m.flash_attn,
        omp_spin_count=m.omp_spin_count,
        extra_args=tuple(ls.extra_args),
    )


def child_env(api_key: str | None = None, omp_spin_count: int = 0) -> dict[str, str]:
    env = {k: os.environ[k] for k in CHILD_ENV_KEYS if k in os.environ}
    # How its OpenMP threads wait: as the embedded model's (model.omp_spin_count).
    env.update(openmp_env(omp_spin_count, os.environ))
    if api_key is not None:
        env["LLAMA_API_KEY"] = api_key
    return env


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bot.backends.llama_server_command`: exec llama-server with Solace's flags.

    For the compose `cpu` profile and a systemd model-server unit (deploy/llama-server.sh).

    Settings come from the environment as for the bot (SOLACE_MODEL__*, SOLACE_LLAMA_SERVER__*);
    LLAMA_MODEL, LLAMA_LORA, LLAMA_PARALLEL, LLAMA_N_CTX (per slot) and LLAMA_THREADS override
    them when set and non-empty; LLAMA_API_KEY (or SOLACE_OPENAI_API_KEY) is the key clients send.
    """
    import argparse

    from bot.config import load_settings

    parser = argparse.ArgumentParser(
        prog="python -m bot.backends.llama_server_command", description=main.__doc__
    )
    parser.add_argument("--host", default=HOST, help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    parser.add_argument("--print", action="store_true", help="print the command, do not run it")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k.startswith("LLAMA_") and v.strip()}
    model = {"path": env.get("LLAMA_MODEL"), "lora_path": env.get("LLAMA_LORA")}
    model |= {"n_ctx": env.get("LLAMA_N_CTX"), "n_threads": env.get("LLAMA_THREADS")}
    overrides: dict[str, Any] = {"model": {k: v for k, v in model.items() if v is not None}}
    if "LLAMA_PARALLEL" in env:
        overrides["llama_server"] = {"parallel": env["LLAMA_PARALLEL"]}
    try:
        settings = load_settings(**overrides)
        binary = find_binary(settings.llama_server.binary)
        if binary is None:
            raise ConfigError(
                f"no llama-server binary (build it: make llama-server; {cache_link()})"
            )
        server = server_command(settings, binary)
        command = server.argv(args.host, args.port)
    except ConfigError as exc:
        print(f"llama_server_command: {exc}", file=sys.stderr)
        return 2
    key = env.get("LLAMA_API_KEY") or os.environ.get("SOLACE_OPENAI_API_KEY") or None
    if args.print:
        print(" ".join(command))
        return 0
    print(f"llama_server_command: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    os.execve(command[0], command, child_env(key, server.omp_spin_count))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
