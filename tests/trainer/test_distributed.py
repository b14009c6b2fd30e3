"""The distributed path, run for real: two processes under `accelerate launch` with DDP over gloo
on the CPU, on a tiny random Llama. Both processes train, the result matches one process with
the same global batch, and a checkpoint written by two processes resumes under one and under two.

accelerate 1.16's `launch --cpu --num_processes 2` starts a *single* process (its multi-CPU
launcher needs mpirun and `--mpirun_hostfile`). `--multi_gpu` launches through torchrun; on a
machine without GPUs, the config's `device = "cpu"` makes each process's `Accelerator(cpu=True)`
join a gloo process group (distributed type MULTI_CPU), which the test checks.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.paths import ROOT
from tests.trainer.helpers import make_dialogues, make_tiny_model_dir, write_esconv_file

pytest.importorskip("peft")
pytest.importorskip("accelerate")
LAUNCH_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp")
    return {
        "root": root,
        "model": make_tiny_model_dir(root / "model"),
        "data": write_esconv_file(root / "d.json", make_dialogues(16, exchanges=5)),
    }


def _config(setup: dict[str, Path], out: Path, **values: Any) -> Path:
    """A TOML config file: batch 2 per process, no dropout (so the runs can be compared)."""
    data: dict[str, Any] = {
        "name": "ddp", "base_model": str(setup["model"]), "output_dir": str(out),
        "dataset": str(setup["data"]), "eval_fraction": 0.25, "max_seq_len": 128,
        "history_tokens": 16, "use_system_prompt": False, "lora_r": 4, "lora_alpha": 8,
        "lora_dropout": 0.0, "batch_size": 2, "grad_accum": 1, "max_steps": 4,
        "learning_rate": 1e-2, "warmup_ratio": 0.0, "device": "cpu", "precision": "fp32",
        "log_every": 1, "eval_every": 2, "save_every": 2, "num_threads": 1,
    }  # fmt: skip
    data.update(values)
    lines = [f"{k} = {json.dumps(v)}" for k, v in data.items()]
    path = out.with_suffix(".toml")
    path.write_text("\n".join(lines) + "\n")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(config: Path, processes: int, *overrides: str) -> str:
    """`accelerate launch --multi_gpu --num_processes N -m trainer.cli CONFIG --resume` (CPU:
    gloo); its output."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
           "no",
           "--main_process_port", str(_free_port()), "-m", "trainer.cli", str(config), "--resume",
           *[x for o in overrides for x in ("--set", o)]]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT_SECONDS)  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    return out


def _in_process(config: Path, *overrides: str) -> None:
    from trainer.config import load_config
    from trainer.train import train

    train(load_config(config, list(overrides)), resume=True, echo=lambda _m: None)


def _history(run: Path) -> list[dict[str, str]]:
    with (run / "loss_history.csv").open() as fh:
        return list(csv.DictReader(fh))


def _losses(run: Path, column: str) -> list[float]:
    return [float(r[column]) for r in _history(run) if r[column]]


def _adapter(run: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(run / "adapter" / "adapter_model.safetensors")


def _assert_same_model(a: Path, b: Path) -> None:
    import torch

    assert _losses(a, "train_loss") == pytest.approx(_losses(b, "train_loss"), rel=1e-4)
    assert _losses(a, "eval_loss") == pytest.approx(_losses(b, "eval_loss"), rel=1e-4)
    wa, wb = _adapter(a), _adapter(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], rtol=1e-4, atol=1e-6), name


def test_two_processes_train_like_one_with_the_same_global_batch(setup: dict[str, Path]) -> None:
    two = setup["root"] / "two"
    output = _launch(_config(setup, two), 2)
    assert output.count("accelerate: MULTI_CPU, 2 process(es), backend gloo, device cpu") == 2
    assert "process 1 of 2: trained on" in output and "process 2 of 2: trained on" in output
    manifest = json.loads((two / "manifest.json").read_text())
    by_process = manifest["metrics"]["tokens_by_process"]
    assert len(by_process) == 2 and all(n > 0 for n in by_process)  # both ranks trained
    one = setup["root"] / "one"
    _in_process(_config(setup, one, grad_accum=2))  # 1 process x 2 micro-batches = 2 x 1
    _assert_same_model(two, one)
    assert sum(by_process) == json.loads((one / "manifest.json").read_text())["metrics"]["tokens"]


def test_a_two_process_checkpoint_resumes_under_one_and_under_two(
    setup: dict[str, Path],
) -> None:
    first = setup["root"] / "ckpt"
    config = _config(setup, first, max_steps=2)
    _launch(config, 2)
    assert (first / "checkpoints" / "step-2" / "state.pt").is_file()
    on_one, on_two = setup["root"] / "on-one", setup["root"] / "on-two"
    shutil.copytree(first, on_one)
    shutil.copytree(first, on_two)
    # one process keeps the global batch with twice the micro-batches; anything else is refused
    from trainer.train import TrainError

    with pytest.raises(TrainError, match="global batch of 4 windows"):
        _in_process(config, "max_steps=4", f"output_dir={json.dumps(str(on_one))}")
    _in_process(config, "max_steps=4", "grad_accum=2", f"output_dir={json.dumps(str(on_one))}")
    _launch(config, 2, "max_steps=4", f"output_dir={json.dumps(str(on_two))}")
    for run in (on_one, on_two):
        assert json.loads((run / "manifest.json").read_text())["metrics"]["steps"] == 4
    _assert_same_model(on_one, on_two)
