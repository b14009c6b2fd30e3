"""Training with a tiny random Llama on CPU: loss goes down, Ctrl-C + --resume is exact, the
run directory holds everything the exporter needs, and bad input fails before heavy loading."""

from __future__ import annotations

import json
import os
import signal
import tomllib
from pathlib import Path

import pytest

from tests.paths import ROOT
from tests.trainer.helpers import make_dialogues
from trainer.config import TrainConfig, TrainConfigError, load_config
from trainer.data import DataError
from trainer.model import ModelError

pytest.importorskip("peft")


def _cfg(tiny_dir: Path, data_file: Path, out: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "name": "tiny",
        "base_model": str(tiny_dir),
        "output_dir": str(out),
        "dataset": str(data_file),
        "eval_fraction": 0.25,
        "max_seq_len": 128,
        "history_tokens": 16,
        "use_system_prompt": False,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.1,
        "batch_size": 2,
        "grad_accum": 2,
        "max_steps": 4,
        "learning_rate": 5e-3,
        "warmup_ratio": 0.0,
        "device": "cpu",
        "precision": "fp32",
        "log_every": 1,
        "eval_every": 2,
        "save_every": 2,
        "num_threads": 1,
    }
    values.update(overrides)
    return TrainConfig.model_validate(values)


def _adapter(run_dir: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def test_loss_goes_down_on_a_repeated_batch(
    tiny_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    from trainer import train as t
    from trainer.batches import build_samples

    cfg = _cfg(tiny_dir, data_file, tmp_path / "run", lora_dropout=0.0, learning_rate=1e-2)
    accelerator = t.make_accelerator(cfg)
    tokenizer = t.load_tokenizer(str(tiny_dir), cfg)
    samples, _ = build_samples(make_dialogues(2), tokenizer, cfg)
    model = t.load_model(str(tiny_dir), cfg, None)
    run = t.build_run(cfg, model, samples, samples, tokenizer.pad_token_id, accelerator)
    before = t.evaluate(run)
    losses = [t.train_step(run, [[0, 1]])[0] for _ in range(2)]
    assert losses[1] < losses[0]
    assert t.evaluate(run) < before


def test_run_writes_outputs_and_manifest(tiny_dir: Path, data_file: Path, tmp_path: Path) -> None:
    from trainer.train import train

    run_dir = train(_cfg(tiny_dir, data_file, tmp_path / "run"), echo=lambda _m: None)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stage"] == "train"
    assert manifest["base_model"]["id_or_path"] == str(tiny_dir)
    assert "<|im_start|>" in manifest["chat_template"]
    assert manifest["data"]["samples"] > 0 and manifest["data"]["target_tokens"] > 0
    assert manifest["metrics"]["steps"] == 4
    for name in manifest["artifacts"].values():
        assert (run_dir / name).exists(), name
    rows = (run_dir / "loss_history.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,train_loss,eval_loss")
    assert len(rows) == 1 + 4 + 3  # four train rows, eval rows at steps 0, 2 and 4
    stats = json.loads((run_dir / "data_stats.json").read_text())
    assert stats["train"]["target_tokens"] == manifest["data"]["target_tokens"]
    # the same run again without --resume refuses to overwrite it
    from trainer.train import TrainError

    with pytest.raises(TrainError, match="--resume"):
        train(_cfg(tiny_dir, data_file, tmp_path / "run"), echo=lambda _m: None)


def test_ctrl_c_then_resume_matches_an_uninterrupted_run(
    tiny_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    from trainer.outputs import checkpoints
    from trainer.train import train

    straight = train(_cfg(tiny_dir, data_file, tmp_path / "a"), echo=lambda _m: None)

    def interrupt_at_step_2(message: str) -> None:
        if message.startswith("step 2:"):  # a real Ctrl-C, delivered to this process
            os.kill(os.getpid(), signal.SIGINT)

    cfg = _cfg(tiny_dir, data_file, tmp_path / "b")
    stopped = train(cfg, echo=interrupt_at_step_2)
    assert not (stopped / "manifest.json").exists()
    assert [p.name for p in checkpoints(stopped)] == ["step-2"]
    resumed = train(cfg, resume=True, echo=lambda _m: None)
    a, b = _adapter(straight), _adapter(resumed)
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] == b[name]).all(), name  # bit-identical
    assert (straight / "loss_history.csv").read_text() != ""


def test_resume_refuses_a_changed_config(tiny_dir: Path, data_file: Path, tmp_path: Path) -> None:
    from trainer.train import TrainError, train

    cfg = _cfg(tiny_dir, data_file, tmp_path / "run", max_steps=2)
    train(cfg, echo=lambda _m: None)
    changed = _cfg(tiny_dir, data_file, tmp_path / "run", max_steps=3, lora_r=8)
    with pytest.raises(TrainError, match="lora_r"):
        train(changed, resume=True, echo=lambda _m: None)


def test_bad_inputs_fail_before_loading_a_model(
    tiny_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    from trainer.train import train

    quiet = {"echo": lambda _m: None}
    with pytest.raises(ModelError, match="does not exist"):
        train(_cfg(tmp_path / "nope", data_file, tmp_path / "r1"), **quiet)
    with pytest.raises(ModelError, match="allow_download"):
        train(_cfg(Path("some-org/some-model"), data_file, tmp_path / "r2"), **quiet)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(DataError, match="no dialogues|empty"):
        train(_cfg(tiny_dir, empty, tmp_path / "r3"), **quiet)
    with pytest.raises(DataError, match="max_seq_len"):
        train(
            _cfg(
                tiny_dir,
                data_file,
                tmp_path / "r4",
                max_seq_len=64,
                history_tokens=0,
                use_system_prompt=True,
            ),
            **quiet,
        )


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('base_model = "x"\nlora_rank = 8\n')
    with pytest.raises(TrainConfigError, match="lora_rank: unknown key"):
        load_config(path)
    path.write_text('base_model = "x"\nlora_r = 0\n')
    with pytest.raises(TrainConfigError, match="lora_r"):
        load_config(path)
    path.write_text('base_model = "x"\nmax_seq_len = 256\nhistory_tokens = 250\n')
    with pytest.raises(TrainConfigError, match="history_tokens"):
        load_config(path)
    path.write_text('base_model = "x"\ndevice = "cpu"\nquantization = "nf4"\n')
    with pytest.raises(TrainConfigError, match="quantization"):
        load_config(path)
    cfg = load_config(path.with_name("ok.toml") if False else _write(tmp_path), ["lora_r=8"])
    assert cfg.lora_r == 8 and cfg.name == "ok"


def _write(tmp_path: Path) -> Path:
    path = tmp_path / "ok.toml"
    path.write_text('base_model = "x"\n')
    return path


TRAIN_CONFIGS = sorted((ROOT / "configs" / "train").rglob("*.toml"))


def test_the_shipped_train_configs_are_found() -> None:
    """Guards the parametrized test below: an empty glob would make it pass by running nothing."""
    names = {p.name for p in TRAIN_CONFIGS}
    assert "smollm2-135m-esconv.toml" in names and "lora-r32-all-raw.toml" in names
    assert len(names) >= 17  # 5 top-level configs and 12 comparison rows


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == tomllib.loads(path.read_text()).get("name", path.stem)
    if "extes" in path.name:  # the paper's Table 2
        assert (cfg.learning_rate, cfg.lora_r, cfg.lora_alpha) == (2e-4, 64, 32)
        assert (cfg.lora_dropout, cfg.lora_bias, cfg.task_type) == (0.1, "none", "CAUSAL_LM")
        assert set(cfg.lora_target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
        assert cfg.epochs == 50 and cfg.precision in ("auto", "fp16", "bf16")
        assert cfg.quantization == ("nf4" if "qlora" in path.name else "none")


def test_mistral_system_template_locates_assistant_turns() -> None:
    from tests.trainer.helpers import make_tokenizer
    from trainer.batches import build_samples
    from trainer.data import IGNORE_INDEX
    from trainer.model import read_chat_template

    root = ROOT
    tok = make_tokenizer()
    tok.chat_template = read_chat_template(
        str(root / "configs" / "train" / "templates" / "mistral-instruct-system.jinja")
    )
    cfg = TrainConfig(name="m", base_model="x", max_seq_len=512, history_tokens=0)
    samples, stats = build_samples(make_dialogues(2), tok, cfg)
    assert stats.target_turns == 8  # 2 dialogues x 4 replies, the system prompt folded in
    targets = tok.decode([x for x in samples[0].labels if x != IGNORE_INDEX])
    assert targets.count("<|im_end|>") == 4


def test_launch_configs_parse() -> None:
    import yaml

    root = ROOT / "configs"
    for path in (root / "accelerate").glob("*.yaml"):
        config = yaml.safe_load(path.read_text())
        assert config["num_processes"] == 4, path
    zero2 = json.loads((root / "deepspeed" / "zero2.json").read_text())
    assert zero2["zero_optimization"]["stage"] == 2
    assert (root / "accelerate" / "deepspeed-zero2.yaml").read_text().count("zero2.json") == 1
