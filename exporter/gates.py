"""Which models to compare, on which data, and the gates that fail an export (uses `verify`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.config import ExportConfig, ExportError
from exporter.parity import (
    EvalSet,
    ModelRow,
    ParityReport,
    agreement,
    build_eval_set,
    gguf_greedy,
    gguf_perplexity,
    gguf_tokens_per_s,
    hf_greedy,
    hf_perplexity,
    hf_tokens_per_s,
    load_llama,
    tokenization_mismatches,
)
from exporter.plan import Plan

Echo = Callable[[str], None]
# Kinds whose greedy agreement is gated (the rest are quantized: reported, not gated).
GREEDY_GATED_KINDS = ("F32", "F16", "BF16", "ADAPTER")


@dataclass
class GGUFTarget:
    """A GGUF to check: a full model, or a base plus a LoRA (`lora`)."""

    name: str
    kind: str
    path: Path
    lora: Path | None = None
    gated: bool = True  # False for the plain base: reported for comparison only


@dataclass
class Reference:
    """The HF side: the model (adapter applied), its tokenizer and what was measured on it."""

    model: Any
    tokenizer: Any
    row: ModelRow
    greedy: list[list[int]] = field(default_factory=list)


def measure_reference(ref: Reference, eval_set: EvalSet, cfg: ExportConfig, eos: set[int]) -> None:
    """Perplexity, greedy continuations and speed of the HF model (filled into `ref`)."""
    ref.row.ppl = hf_perplexity(ref.model, eval_set)
    ref.greedy = [hf_greedy(ref.model, p, cfg.greedy_tokens, eos) for p in eval_set.prompts]
    if eval_set.prompts:
        ref.row.tokens_per_s = hf_tokens_per_s(ref.model, eval_set.prompts[0], cfg.bench_tokens)


def check_target(
    target: GGUFTarget, ref: Reference, eval_set: EvalSet, cfg: ExportConfig, eos: set[int]
) -> ModelRow:
    """Measure one GGUF against the reference and record every gated failure."""
    import gc

    row = ModelRow(name=target.name, kind=target.kind, path=str(target.lora or target.path))
    row.size_bytes = (target.lora or target.path).stat().st_size
    start = time.perf_counter()
    llm = load_llama(target.path, cfg, target.lora)
    row.load_s = time.perf_counter() - start
    try:
        bad = tokenization_mismatches(ref.tokenizer, llm, eval_set.texts)
        row.tokenization_mismatches = len(bad)
        row.ppl = gguf_perplexity(llm, eval_set)
        outs = [gguf_greedy(llm, p, cfg.greedy_tokens, eos) for p in eval_set.prompts]
        scores = [agreement(a, b) for a, b in zip(ref.greedy, outs, strict=True)]
        row.greedy_agreement = sum(scores) / len(scores) if scores else None
        if eval_set.prompts:
            row.tokens_per_s = gguf_tokens_per_s(llm, eval_set.prompts[0], cfg.bench_tokens)
    finally:
        llm.close()
        del llm
        gc.collect()
    if not target.gated:
        return row
    row.gated = True
    row.ppl_increase = row.ppl / ref.row.ppl - 1.0
    row.bound = cfg.ppl_bound(target.kind)
    if bad:
        row.failures.append(
            f"tokenization differs from the HF tokenizer on {len(bad)} of "
            f"{len(eval_set.texts)} texts (first: text #{bad[0]})"
        )
    # Two-sided: a GGUF that is "better" than the model it was converted from is not that model.
    if not math.isfinite(row.ppl) or abs(row.ppl_increase) > row.bound:
        row.failures.append(
            f"perplexity {row.ppl:.4g} vs HF {ref.row.ppl:.4g} "
            f"({row.ppl_increase:+.2%}, allowed ±{row.bound:.1%})"
        )
    agree = row.greedy_agreement
    if target.kind in GREEDY_GATED_KINDS and agree is not None and agree < cfg.min_greedy_agreement:
        row.failures.append(
            f"greedy agreement {agree:.2f} < required {cfg.min_greedy_agreement:.2f}"
        )
    return row


def run_checks(
    ref: Reference,
    targets: Sequence[GGUFTarget],
    eval_set: EvalSet,
    cfg: ExportConfig,
    eos: set[int],
    echo: Echo = print,
) -> ParityReport:
    """Measure the reference and every target; the report lists each failed gated check."""
    if not eval_set.chats:
        raise ValueError("no evaluation chats with assistant tokens; check eval_spec")
    echo(f"  HF reference: perplexity on {len(eval_set.chats)} chats ...")
    measure_reference(ref, eval_set, cfg, eos)
    rows = [ref.row]
    for target in targets:
        echo(f"  {target.name}: tokenization, perplexity, greedy, speed ...")
        row = check_target(target, ref, eval_set, cfg, eos)
        status = "ok" if row.passed else "FAILED: " + "; ".join(row.failures)
        echo(f"    ppl {row.ppl:.4g} (HF {ref.row.ppl:.4g}) {status}")
        rows.append(row)
    return ParityReport(
        rows=rows,
        eval_chats=len(eval_set.chats),
        eval_tokens=sum(sum(m) for m in eval_set.masks),
        tokenization_texts=len(eval_set.texts),
    )


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
        model = load_model(plan.run.base_hf_dir, plan.run.weights_dir, plan.cfg.merge_dtype)
        name = f"HF base + adapter ({plan.cfg.merge_dtype})"
        size = dir_size_bytes(plan.run.base_hf_dir) + dir_size_bytes(
            plan.run.weights_dir, "adapter_model.*"
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
