"""Synthesis with real parts: llama-cpp-python's OpenAI server with the embedded SmolLM2 GGUF
(a 135M model mostly fails the gates: every failure is counted and nothing invalid is written),
and a synthesized, reviewed file trained with `solace train` on a tiny model (issue 22)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from synthesis.config import ValidationConfig
from synthesis.store import RunStore
from synthesis.validate import REASONS, Validator
from tests.servers.synth import SEEDS, ScriptedServer, write_config

START_TIMEOUT_SECONDS = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def llama_server(smollm2_gguf: Path, tmp_path: Path) -> Iterator[str]:
    """`python -m llama_cpp.server` with SmolLM2 on a free loopback port; its base URL."""
    pytest.importorskip("uvicorn", reason="llama-cpp-python[server] extras are not installed")
    import httpx

    port = _free_port()
    log = (tmp_path / "llama-server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf),
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
         "--n_threads", str(min(os.cpu_count() or 1, 2)), "--verbose", "false"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError((tmp_path / "llama-server.log").read_text()[-2000:])
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        else:
            raise RuntimeError("llama_cpp.server did not start")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_a_tiny_real_model_fails_counted_and_writes_nothing_invalid(
    llama_server: str, tmp_path: Path
) -> None:
    config = tmp_path / "local.toml"
    config.write_text(
        f'model = "smollm2"\nbase_url = "{llama_server}"\noutput_dir = "{tmp_path / "run"}"\n'
        f'seeds = "{SEEDS}"\nonly_scenarios = ["Dealing with the Loss of a Pet", "Academic Stress"]\n'
        "per_scenario = 1\nmax_attempts = 1\nmax_tokens = 256\nconcurrency = 1\n"
        "timeout_seconds = 600\n"
    )
    result = CliRunner().invoke(cli, ["data", "synthesize", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    entry = manifest["rounds"][0]
    # llama_cpp.server refuses OpenAI's json_schema and gets its own grammar-backed form
    assert entry["counters"]["json_mode_fallback_to_json_object_schema"] == 1
    rejected = sum(entry["rejection_reasons"].values())
    assert set(entry["rejection_reasons"]) <= set(REASONS)
    assert entry["answers"] == 2 == rejected + entry["slots"].get("done", 0)
    store = RunStore(tmp_path / "run" / "synth.db")
    validator = Validator(ValidationConfig())
    for candidate in store.candidates():  # whatever passed, passes again
        assert validator.check_edit(candidate.record, candidate.scenario).ok
    store.close()
    assert json.loads((tmp_path / "run" / "dialogues.json").read_text()) == []
    assert manifest["cost"]["usd"] == 0.0 and manifest["cost"]["completion_tokens"] > 0


def test_a_synthesized_reviewed_file_trains(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from tests.trainer.helpers import make_tiny_model_dir

    scenes = [f"Training Scene {n}" for n in range(6)]
    with ScriptedServer() as server:
        cfg = write_config(tmp_path, server.url, scenes, concurrency=1)
        result = CliRunner().invoke(cli, ["data", "synthesize", str(cfg), "--no-progress"])
        assert result.exit_code == 0, result.output
    run_dir = tmp_path / "run"
    review = CliRunner().invoke(cli, ["data", "review", str(run_dir)], input="a\n" * 6)
    assert "decisions: accepted 6" in review.output, review.output
    data = run_dir / "dialogues.json"
    tiny = make_tiny_model_dir(tmp_path / "tiny")
    train_config = tmp_path / "train.toml"
    train_config.write_text(
        f'name = "synth-tiny"\nbase_model = "{tiny}"\noutput_dir = "{tmp_path / "train"}"\n'
        f'dataset = "{data}:train"\neval_dataset = "{data}:test"\nmax_seq_len = 128\n'
        'history_tokens = 16\nuse_system_prompt = false\nstrategy_conditioning = "prefix"\n'
        "lora_r = 4\nlora_alpha = 8\nbatch_size = 2\ngrad_accum = 1\nmax_steps = 2\n"
        'warmup_ratio = 0.0\ndevice = "cpu"\nprecision = "fp32"\nlog_every = 1\n'
        "eval_every = 2\nsave_every = 2\nnum_threads = 1\n"
    )
    result = CliRunner().invoke(cli, ["train", str(train_config)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "train" / "manifest.json").read_text())
    assert manifest["metrics"]["steps"] == 2
    assert manifest["data"]["samples"] > 0 and manifest["data"]["target_tokens"] > 0
    assert manifest["strategy_conditioning"] == "prefix"
