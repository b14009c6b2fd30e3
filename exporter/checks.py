"""Glue between the pipeline and `exporter.verify`: which models to compare, on which data."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from exporter.config import ExportError
from exporter.verify import EvalSet, GGUFTarget, ModelRow, Reference, build_eval_set, run_checks

if TYPE_CHECKING:
    from exporter.pipeline import Plan


def load_eval_dialogues(spec: str) -> list[Any]:
    """Held-out dialogues for the checks (consecutive same-speaker turns merged)."""
    from dialogue.datasets import DatasetError, load_spec

    try:
        result = load_spec(spec, merge_consecutive=True)
    except DatasetError as exc:
        raise ExportError(f"cannot load eval_spec {spec!r}: {exc}") from exc
    if not result.dialogues:
        raise ExportError(f"eval_spec {spec!r} has no usable dialogues")
    return list(result.dialogues)


def end_tokens(tokenizer: Any) -> set[int]:
    """Token ids that end a reply (eos and the chat template's end-of-turn, if known)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for tok in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return ids


def load_reference(plan: Plan, tokenizer: Any) -> Reference:
    """The HF model users were promised: merged dir, or base + adapter merged in memory."""
    from exporter.merge import dir_size_bytes, load_model

    start = time.perf_counter()
    if plan.cfg.adapter_only:
        model = load_model(plan.run.base_hf_dir, plan.run.adapter_dir, plan.cfg.merge_dtype)
        name = f"HF base + adapter ({plan.cfg.merge_dtype})"
        size = dir_size_bytes(plan.run.base_hf_dir) + dir_size_bytes(
            plan.run.adapter_dir, "adapter_model.*"
        )
    else:
        merged = plan.path("merged")
        model = load_model(merged, None, plan.cfg.merge_dtype)
        name = f"HF merged ({plan.cfg.merge_dtype})"
        size = dir_size_bytes(merged)
    row = ModelRow(name=name, kind="HF", path=None, size_bytes=size)
    row.load_s = time.perf_counter() - start
    return Reference(model=model, tokenizer=tokenizer, row=row)


def gguf_targets(plan: Plan) -> list[GGUFTarget]:
    """The GGUF files this export checks, the base GGUF alone last (for comparison)."""
    from exporter.gguf import gguf_file_type

    targets = []
    if plan.cfg.adapter_only:
        if plan.base_gguf is None:
            raise ExportError("adapter-only verification needs the base GGUF")
        base_type = gguf_file_type(plan.base_gguf)
        targets.append(
            GGUFTarget(
                f"adapter on base {base_type}",
                "ADAPTER",
                plan.base_gguf,
                lora=plan.path("adapter.gguf"),
            )
        )
    else:
        kinds = [plan.cfg.outtype.upper(), *plan.cfg.quants]
        targets += [GGUFTarget(f"GGUF {k}", k, plan.path(plan.gguf_name(k))) for k in kinds]
    if plan.cfg.compare_base and plan.base_gguf is not None:
        base_type = gguf_file_type(plan.base_gguf)
        targets.append(
            GGUFTarget(f"base GGUF {base_type} (untuned)", "BASE", plan.base_gguf, gated=False)
        )
    return targets


def verify_export(plan: Plan) -> dict[str, Any]:
    """Run every parity check of this export; returns the JSON-ready report."""
    import torch

    from exporter.merge import load_tokenizer

    if plan.cfg.n_threads:
        torch.set_num_threads(plan.cfg.n_threads)
    tokenizer = load_tokenizer(plan.run.tokenizer_dir, plan.run.chat_template)
    dialogues = load_eval_dialogues(plan.cfg.eval_spec)
    system_prompt = plan.run.raw.get("system_prompt")
    eval_set: EvalSet = build_eval_set(
        tokenizer,
        dialogues,
        plan.cfg,
        system_prompt,
        strategy_prefix=plan.run.strategy_conditioning == "prefix",
    )
    plan.echo(
        f"  eval set: {len(eval_set.chats)} chats, {sum(map(sum, eval_set.masks))} scored "
        f"tokens, {len(eval_set.texts)} tokenization texts, {len(eval_set.prompts)} prompts"
    )
    ref = load_reference(plan, tokenizer)
    report = run_checks(
        ref, gguf_targets(plan), eval_set, plan.cfg, end_tokens(tokenizer), plan.echo
    )
    out = report.to_dict()
    out["eval_spec"] = plan.cfg.eval_spec
    return out
