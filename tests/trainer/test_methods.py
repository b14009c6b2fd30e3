"""The methods the comparison trains (LoRA, adaption prompt, full), the token budget, early
stopping, served windows and the bad-input errors, on a tiny random Llama built in the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.paths import ROOT
from tests.trainer.helpers import (
    make_dialogues,
    make_tokenizer,
    write_esconv_file,
)
from trainer.config import TrainConfig, TrainConfigError, load_config
from trainer.data import DataError

pytest.importorskip("peft")
QUIET = {"echo": lambda _m: None}


def _cfg(tiny_dir: Path, data_file: Path, out: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "name": "tiny", "base_model": str(tiny_dir), "output_dir": str(out),
        "dataset": str(data_file), "eval_fraction": 0.25, "max_seq_len": 128,
        "history_tokens": 16, "use_system_prompt": False, "lora_r": 4, "lora_alpha": 8,
        "batch_size": 2, "grad_accum": 2, "max_steps": 4, "learning_rate": 5e-3,
        "warmup_ratio": 0.0, "device": "cpu", "precision": "fp32", "log_every": 1,
        "eval_every": 2, "save_every": 2, "num_threads": 1,
    }  # fmt: skip
    values.update(overrides)
    return TrainConfig.model_validate(values)


def _manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "manifest.json").read_text())


def _rows(run_dir: Path) -> list[dict[str, str]]:
    import csv

    with (run_dir / "loss_history.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_full_fine_tune_trains_every_weight_and_saves_the_model(
    tiny_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from trainer.train import train

    run_dir = train(_cfg(tiny_dir, data_file, tmp_path / "run", method="full"), **QUIET)
    manifest = _manifest(run_dir)
    assert manifest["method"] == "full"
    assert (
        manifest["artifacts"]["model_dir"] == "model" and "adapter_dir" not in manifest["artifacts"]
    )
    metrics = manifest["metrics"]
    assert metrics["trainable_parameters"] == metrics["total_parameters"] > 0
    base = load_file(tiny_dir / "model.safetensors")
    tuned = load_file(run_dir / "model" / "model.safetensors")
    changed = [k for k in base if not (base[k] == tuned[k]).all()]
    assert len(changed) == len(base)  # every weight moved, embeddings and norms included
    evals = [float(r["eval_loss"]) for r in _rows(run_dir) if r["eval_loss"]]
    assert evals[-1] < evals[0]


def test_adaption_prompt_trains_only_gated_prompts(
    tiny_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from trainer.train import train

    cfg = _cfg(tiny_dir, data_file, tmp_path / "run", method="adaption_prompt", adapter_len=3,
               learning_rate=5e-2)  # fmt: skip
    run_dir = train(cfg, **QUIET)
    adapter = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "ADAPTION_PROMPT"
    assert (adapter["adapter_len"], adapter["adapter_layers"]) == (3, 2)  # None = all 2 layers
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert {k.rsplit(".", 1)[-1] for k in weights} == {"adaption_prompt", "adaption_gate"}
    gates = [v for k, v in weights.items() if k.endswith("adaption_gate")]
    assert len(gates) == 2 and all(float(g.abs().sum()) > 0 for g in gates)  # opened from zero
    metrics = _manifest(run_dir)["metrics"]
    assert metrics["trainable_parameters"] == 2 * (3 * 32 + 1)  # 2 layers x (3 x hidden + gate)


def test_target_token_budget_sets_the_number_of_steps(
    tiny_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    from trainer.train import planned_steps, train

    cfg = _cfg(tiny_dir, data_file, tmp_path / "run", max_steps=None, target_token_budget=300)
    run_dir = train(cfg, **QUIET)
    stats = json.loads((run_dir / "data_stats.json").read_text())["train"]
    per_step_targets = stats["target_tokens"] / stats["samples"] * 4  # 2 x 2 samples a step
    steps = _manifest(run_dir)["metrics"]["steps"]
    assert steps == -(-300 // per_step_targets)  # ceil
    assert planned_steps(cfg.model_copy(update={"max_steps": 7}), [], 1) == 7  # max_steps wins


def test_early_stopping_keeps_the_best_eval_weights(
    tiny_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from trainer.train import train

    # No later eval can beat step 0 by 10 nats: the run stops after `patience` evals and its
    # outputs are the step-0 weights (LoRA B starts at zero).
    cfg = _cfg(tiny_dir, data_file, tmp_path / "run", max_steps=12, early_stopping_patience=2,
               early_stopping_min_delta=10.0)  # fmt: skip
    messages: list[str] = []
    run_dir = train(cfg, echo=messages.append)
    metrics = _manifest(run_dir)["metrics"]
    assert metrics["steps"] == 4 and metrics["best_step"] == 0 and metrics["weights_step"] == 0
    assert any(m.startswith("early stopping at step 4") for m in messages)
    lora_b = [v for k, v in load_file(run_dir / "adapter" / "adapter_model.safetensors").items()
              if "lora_B" in k]  # fmt: skip
    assert lora_b and all(float(v.abs().sum()) == 0 for v in lora_b)


def test_resume_with_another_method_is_refused_by_name(
    tiny_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    from trainer.train import TrainError, train

    train(_cfg(tiny_dir, data_file, tmp_path / "run", max_steps=2), **QUIET)
    with pytest.raises(TrainError, match="method = 'lora'.*'full'"):
        train(_cfg(tiny_dir, data_file, tmp_path / "run", method="full"), resume=True, **QUIET)


def test_resume_accepts_a_checkpoint_older_than_new_config_keys(
    tiny_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    import torch

    from trainer.outputs import checkpoints
    from trainer.train import train

    cfg = _cfg(tiny_dir, data_file, tmp_path / "run", max_steps=2)
    train(cfg, **QUIET)
    state = checkpoints(tmp_path / "run")[-1] / "state.pt"
    payload = torch.load(state, weights_only=False)
    for key in ("method", "windows", "target_token_budget", "early_stopping_patience"):
        del payload["config"][key]  # a checkpoint written before these keys existed
    torch.save(payload, state)
    train(cfg.model_copy(update={"max_steps": 3}), resume=True, **QUIET)
    assert _manifest(tmp_path / "run")["metrics"]["steps"] == 3


def test_adaption_prompt_on_a_non_llama_base_fails_before_loading(
    data_file: Path, tmp_path: Path
) -> None:
    from trainer.methods import MethodError
    from trainer.train import train

    hf_dir = tmp_path / "gemma"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    with pytest.raises(MethodError, match="Llama-architecture.*gemma3_text"):
        train(_cfg(hf_dir, data_file, tmp_path / "r1", method="adaption_prompt"), **QUIET)
    gguf_file = _gguf_header(tmp_path / "gemma.gguf", "gemma3")
    with pytest.raises(MethodError, match="'gemma3'"):
        train(_cfg(gguf_file, data_file, tmp_path / "r2", method="adaption_prompt"), **QUIET)
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def _gguf_header(path: Path, arch: str) -> Path:
    """A GGUF file with only its header and architecture (enough for the early check)."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_strategy_config_on_unlabelled_data_fails_before_loading(
    tiny_dir: Path, tmp_path: Path
) -> None:
    from trainer.train import train

    records = json.loads(write_esconv_file(tmp_path / "d.json", make_dialogues(4)).read_text())
    for record in records:
        for turn in record["dialog"]:
            turn.pop("strategy", None)
    (tmp_path / "d.json").write_text(json.dumps(records))
    cfg = _cfg(tiny_dir, tmp_path / "d.json", tmp_path / "run", strategy_conditioning="prefix")
    with pytest.raises(DataError, match="no strategy labels"):
        train(cfg, **QUIET)
    assert not (tmp_path / "run").exists()


def test_extends_reads_the_parent_and_overrides_it(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text('base_model = "x"\nlora_r = 8\nmax_seq_len = 256\n')
    (tmp_path / "row.toml").write_text('extends = "base.toml"\nlora_r = 32\n')
    cfg = load_config(tmp_path / "row.toml")
    assert (cfg.name, cfg.lora_r, cfg.max_seq_len) == ("row", 32, 256)
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(TrainConfigError, match="loops"):
        load_config(tmp_path / "a.toml")
    (tmp_path / "c.toml").write_text('extends = "missing.toml"\n')
    with pytest.raises(TrainConfigError, match="not found"):
        load_config(tmp_path / "c.toml")


COMPARE = sorted((ROOT / "configs" / "train" / "compare").glob("*.toml"))


def test_comparison_rows_share_budget_data_and_windows() -> None:
    rows = {p.stem: load_config(p) for p in COMPARE}
    shared = ("target_token_budget", "dataset", "eval_dataset", "eval_max_samples", "windows",
              "max_seq_len", "raw_recent", "compress_in_blocks", "seed", "batch_size",
              "grad_accum", "base_model")  # fmt: skip
    first = next(iter(rows.values()))
    for name, cfg in rows.items():
        assert {k: getattr(cfg, k) for k in shared} == {k: getattr(first, k) for k in shared}, name
        assert cfg.output_dir == f"runs/compare/{name}"
        method = {"lora": "lora", "adapter": "adaption_prompt", "full": "full"}[name.split("-")[0]]
        assert cfg.method == method, name
        assert cfg.context_representation == ("raw" if "-raw" in name else "hybrid"), name
        assert cfg.strategy_conditioning == ("prefix" if "strategies" in name else "none"), name
    methods = {(c.method, c.lora_r if c.method == "lora" else 0) for c in rows.values()}
    assert methods == {("lora", 16), ("lora", 32), ("adaption_prompt", 0), ("full", 0)}
    assert len(rows) == 12  # 4 methods x (hybrid, hybrid + strategies, raw)


# Keys in which the shipped config may differ from the comparison's winner: the length and
# schedule of the run and its bookkeeping, never the data, windows, model or method.
LONGER_RUN_KEYS = {"name", "output_dir", "epochs", "max_steps", "target_token_budget",
                   "early_stopping_patience", "early_stopping_min_delta", "lr_scheduler",
                   "warmup_ratio", "eval_every", "save_every", "log_every", "num_threads"}  # fmt: skip


def test_shipped_config_is_the_comparison_winner_trained_longer() -> None:
    root = ROOT / "configs" / "train"
    shipped = load_config(root / "smollm2-135m-esconv.toml").model_dump()
    winner = load_config(root / "compare" / "lora-r16-top12-hybrid.toml").model_dump()
    differ = {k for k in shipped if shipped[k] != winner[k]}
    assert differ <= LONGER_RUN_KEYS, differ - LONGER_RUN_KEYS
    assert shipped["target_token_budget"] is None and shipped["early_stopping_patience"]
    assert shipped["context_representation"] == "hybrid" and shipped["windows"] == "served"
    # a constant rate: cutting the run at step N (--set max_steps=N) is the same run up to N
    assert shipped["lr_scheduler"] == "constant_with_warmup" and shipped["warmup_ratio"] == 0


# --------------------------------------------------------------------------- served windows ---
@pytest.mark.parametrize("representation", ["hybrid", "raw", "keypos"])
@pytest.mark.parametrize("strategies", [False, True])
def test_served_windows_show_every_target_the_bots_prompt(
    representation: str, strategies: bool
) -> None:
    """Oracle: for every target of every window, the messages before it are what
    dialogue.window.build_context sends for that reply (same history, blocks=True)."""
    from trainer.data import conversation_turns
    from trainer.served import ServedWindowBuilder

    cfg = TrainConfig(name="s", base_model="x", max_seq_len=4096, history_tokens=16,
                      windows="served", context_representation=representation, raw_recent=2,
                      strategy_conditioning="prefix" if strategies else "none")  # fmt: skip
    builder = ServedWindowBuilder(make_tokenizer(), cfg)
    checked = 0
    for dialogue in make_dialogues(3, exchanges=9, seed=5):
        turns = conversation_turns(dialogue)
        history_texts = [t.text if t.role == "user" else builder._target_text(t) for t in turns]
        for group in builder.groups(len(turns) // 2):
            context = builder.served_context(turns[: 2 * group[0]],
                                             builder.compressed_before(2 * group[0]))  # fmt: skip
            block = [(t.role, builder._target_text(t)) for e in group
                     for t in (turns[2 * e], turns[2 * e + 1])]  # fmt: skip
            for k, e in enumerate(group):
                ours = list(context) + block[: 2 * k]
                expected = _bot_history(history_texts[: 2 * e], turns, representation)
                assert ours == expected, (dialogue.id, e)
                checked += 1
    assert checked == 27
    if representation == "keypos":  # every reply moves the boundary: one window each
        assert all(len(g) == 1 for g in builder.groups(9))


def _bot_history(texts: list[str], turns: list[Any], representation: str) -> list[tuple[str, str]]:
    from dialogue.context import represent
    from dialogue.window import ContextTurn, build_context, compressed_form

    form = compressed_form(representation)
    stored = []
    for n, text in enumerate(texts):
        small = represent([text], form)[0] if form else None  # type: ignore[arg-type]
        stored.append(ContextTurn(role=turns[n].role, text=text, tokens=len(text.split()),
                                  compressed=small, representation=form,
                                  compressed_tokens=len(small.split()) if small else None))  # fmt: skip
    built = build_context(stored, "now", 1, system_prompt=None, system_tokens=0,
                          budget_tokens=100_000, representation=representation, raw_recent=2,
                          blocks=True)  # fmt: skip
    return [(m["role"], m["content"]) for m in built.messages[:-1]]


def test_served_hybrid_windows_train_targets_only(tiny_dir: Path, data_file: Path) -> None:
    from trainer.batches import build_samples
    from trainer.data import IGNORE_INDEX
    from trainer.model import load_tokenizer

    cfg = _cfg(tiny_dir, data_file, Path("unused"), windows="served",
               context_representation="hybrid", raw_recent=2, max_seq_len=512)  # fmt: skip
    tok = load_tokenizer(str(tiny_dir), cfg)
    dialogues = make_dialogues(2, exchanges=9, seed=1)
    samples, stats = build_samples(dialogues, tok, cfg)
    # exchanges 0-2 share the first boundary, then 2 exchanges per window: 1 + 3 windows each
    assert stats.samples == len(samples) == 8 and stats.target_turns == 18
    for sample in samples:
        text = tok.decode([x for x in sample.labels if x != IGNORE_INDEX])
        assert "user" not in text.split() and text.count("<|im_end|>") >= 1
