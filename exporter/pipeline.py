"""The export pipeline: resumable steps from a training run to GGUF files, checks and a card.

Full export:   merge → convert (f16, tokenizer parity, chat template) → quantize… → verify → card
Adapter-only:  convert-lora → verify → card

Each finished step is recorded in `<out>/.export-state.json` with its outputs; a rerun skips
steps whose outputs still exist (a changed run or config starts over). Outputs are written under
temporary names and renamed when complete, so an interrupted step never looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.runfiles import write_json
from exporter import gguf as gg
from exporter.config import ExportConfig, ExportError, ParityError, RunManifest, resolve_ref
from exporter.plan import Echo, Plan

logger = logging.getLogger(__name__)

STATE_FILE = ".export-state.json"
LOG_DIR = "logs"
GIB = 1024**3


class StepState:
    """Which steps are done (with their outputs and timings), persisted as JSON."""

    def __init__(self, path: Path, fingerprint: str, echo: Echo) -> None:
        self.path = path
        self.data: dict[str, Any] = {"fingerprint": fingerprint, "steps": {}}
        if path.is_file():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                old = {}
            if old.get("fingerprint") == fingerprint:
                self.data = old
            else:
                echo("  (the output directory holds another run's or config's export: redoing)")

    def done(self, name: str, key: str = "") -> dict[str, Any] | None:
        """The record of a finished step (same `key`) whose outputs all exist, else None."""
        rec = self.data["steps"].get(name)
        if (
            rec
            and rec.get("key", "") == key
            and all((self.path.parent / o).exists() for o in rec.get("outputs", []))
        ):
            return dict(rec)
        return None

    def record(
        self, name: str, seconds: float, outputs: list[str], info: dict[str, Any], key: str = ""
    ) -> None:
        """Mark a step finished and save."""
        self.data["steps"][name] = {
            "seconds": round(seconds, 2),
            "outputs": outputs,
            "key": key,
            **info,
        }
        write_json(self.path, self.data)

    def timings(self) -> dict[str, float]:
        """Seconds per finished step."""
        return {k: v.get("seconds", 0.0) for k, v in self.data["steps"].items()}


# Config keys that change the files written; the other keys only change the verify step.
ARTIFACT_KEYS = (
    "adapter_only",
    "outtype",
    "adapter_outtype",
    "merge_dtype",
    "base_gguf",
    "copy_base_tokenizer",
)


def fingerprint(run: RunManifest, cfg: ExportConfig) -> str:
    """Identifies (run manifest, adapter weights, artifact config): a change starts over."""
    h = hashlib.sha256()
    h.update((run.run_dir / "manifest.json").read_bytes())
    pattern = "*.safetensors" if run.model_dir is not None else "adapter_model.*"
    for p in sorted(run.weights_dir.glob(pattern)):
        h.update(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode())
    h.update(json.dumps(cfg.model_dump(mode="json", include=set(ARTIFACT_KEYS))).encode())
    return h.hexdigest()[:16]


def verify_key(cfg: ExportConfig) -> str:
    """Identifies the verification settings: a change reruns only the verify step."""
    data = cfg.model_dump(mode="json", exclude=set(ARTIFACT_KEYS))
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def resolve_base_gguf(run: RunManifest, cfg: ExportConfig) -> tuple[Path | None, str | None]:
    """The base GGUF (path, portable reference) from the config or the run manifest."""
    ref = cfg.base_gguf
    if ref is None:
        spec = str(run.raw.get("base_model", {}).get("id_or_path") or "")
        ref = spec if spec.startswith("pkg:") else run.base_gguf
    if not ref:
        return None, None
    path = resolve_ref(ref, run.run_dir)
    if not path.is_file():
        raise ExportError(f"base GGUF {ref!r} not found (set base_gguf in the export config)")
    return path, ref if ref.startswith("pkg:") else str(path.resolve())


def free_bytes(path: Path) -> int:
    """Free disk space on the file system that holds `path` (or its nearest parent)."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_disk(plan: Plan, state: StepState) -> None:
    """Refuse to start when the outputs still to write would not fit on the disk."""
    from exporter.merge import dir_size_bytes, param_bytes_f32

    cfg = plan.cfg
    if cfg.adapter_only:
        need = (
            3 * dir_size_bytes(plan.run.weights_dir, "adapter_model.*")
            if not state.done("convert-lora")
            else 0
        )
    else:
        f32 = param_bytes_f32(plan.run.base_hf_dir)
        need = 0 if state.done("merge") else f32
        need += 0 if state.done("convert") else f32  # converted + rewritten copy, f16 each
        need += sum(f32 // 2 for q in cfg.quants if not state.done(f"quantize:{q}"))
    need = int(need * cfg.disk_margin)
    have = free_bytes(plan.out_dir)
    if need > have:
        raise ExportError(
            f"not enough disk space in {plan.out_dir}: the export needs about "
            f"{need / GIB:.2f} GiB more, {have / GIB:.2f} GiB are free. Free some space or "
            "choose another --out"
        )


def step_merge(plan: Plan) -> tuple[list[str], dict[str, Any]]:
    """Merge the adapter into the 16/32-bit base (a full fine-tune: its model as it is); save
    safetensors + tokenizer."""
    from exporter.merge import copy_model, load_tokenizer, merge_adapter

    tokenizer = load_tokenizer(plan.run.tokenizer_dir, plan.run.chat_template)
    if plan.run.model_dir is not None:
        copy_model(plan.run.model_dir, tokenizer, plan.path("merged"), plan.cfg.merge_dtype)
        return ["merged"], {"dtype": plan.cfg.merge_dtype, "full_fine_tune": True}
    merge_adapter(
        plan.run.base_hf_dir,
        plan.run.weights_dir,
        tokenizer,
        plan.path("merged"),
        plan.cfg.merge_dtype,
    )
    return ["merged"], {"dtype": plan.cfg.merge_dtype}


def step_convert(plan: Plan) -> tuple[list[str], dict[str, Any]]:
    """convert_hf_to_gguf.py on the merged model, then tokenizer parity and chat template.

    When the converted tokenizer differs from the base GGUF's (as for a Gemma base rebuilt from
    GGUF, which has no tokenizer.model), the base's `tokenizer.*` metadata is carried over; the
    run's chat template is always embedded.
    """
    work = plan.path(f"work/converted-{plan.cfg.outtype}.gguf")
    work.parent.mkdir(parents=True, exist_ok=True)
    gg.convert_hf(plan.path("merged"), work, plan.cfg.outtype, plan.path(f"{LOG_DIR}/convert.log"))
    dst = plan.path(plan.gguf_name(plan.cfg.outtype))
    diffs: list[str] = []
    donor = None
    if plan.base_gguf is not None and plan.cfg.copy_base_tokenizer != "never":
        diffs = gg.tokenizer_differences(work, plan.base_gguf)
        if diffs or plan.cfg.copy_base_tokenizer == "always":
            donor = plan.base_gguf
            plan.echo(f"  tokenizer differs from the base GGUF in {diffs}: copying the base's")
    template = plan.run.chat_template or gg.read_metadata(work).get(gg.CHAT_TEMPLATE_KEY)
    strings = {gg.CHAT_TEMPLATE_KEY: template} if template else {}
    gg.rewrite_metadata(work, dst, tokenizer_from=donor, set_strings=strings)
    work.unlink()
    with contextlib.suppress(OSError):
        work.parent.rmdir()
    info = {
        "tokenizer_differences": diffs,
        "tokenizer_copied_from_base": donor is not None,
        "chat_template_embedded": bool(template),
        "size_bytes": dst.stat().st_size,
    }
    return [dst.name], info


def step_quantize(plan: Plan, qtype: str) -> tuple[list[str], dict[str, Any]]:
    """llama_model_quantize from the unquantized GGUF."""
    src = plan.path(plan.gguf_name(plan.cfg.outtype))
    dst = plan.path(plan.gguf_name(qtype))
    gg.quantize(src, dst, qtype, plan.cfg.n_threads)
    return [dst.name], {"size_bytes": dst.stat().st_size}


def step_convert_lora(plan: Plan) -> tuple[list[str], dict[str, Any]]:
    """convert_lora_to_gguf.py: the adapter as a GGUF LoRA for the base GGUF."""
    from exporter.merge import converter_base_dir

    out = plan.path("adapter.gguf")
    gg.convert_lora(
        plan.run.weights_dir,
        converter_base_dir(plan.run.base_hf_dir, plan.path("work")),
        out,
        plan.cfg.adapter_outtype,
        plan.path(f"{LOG_DIR}/convert_lora.log"),
    )
    shutil.rmtree(plan.path("work"), ignore_errors=True)
    return [out.name], {"size_bytes": out.stat().st_size}


def step_verify(plan: Plan) -> tuple[list[str], dict[str, Any]]:
    """Parity checks; writes parity.json and raises ParityError when a gated check fails."""
    from exporter.gates import verify_export

    report = verify_export(plan)
    path = plan.path("parity.json")
    write_json(path, report)
    if not report["passed"]:
        raise ParityError(
            "the exported model does not match the trained one (details in "
            f"{path}):\n  " + "\n  ".join(report["failures"])
        )
    return ["parity.json"], {}


def build_steps(plan: Plan) -> list[tuple[str, Callable[[], tuple[list[str], dict[str, Any]]]]]:
    """The ordered steps of this export."""
    steps: list[tuple[str, Callable[[], tuple[list[str], dict[str, Any]]]]] = []
    if plan.cfg.adapter_only:
        steps.append(("convert-lora", lambda: step_convert_lora(plan)))
    else:
        steps += [
            ("merge", lambda: step_merge(plan)),
            ("convert", lambda: step_convert(plan)),
        ]
        for q in plan.cfg.quants:
            steps.append((f"quantize:{q}", lambda q=q: step_quantize(plan, q)))  # type: ignore[misc]
    if plan.cfg.verify:
        steps.append(("verify", lambda: step_verify(plan)))
    return steps


def run_export(run: RunManifest, cfg: ExportConfig, out_dir: Path, echo: Echo = print) -> Path:
    """Run (or resume) the export; returns the path of the written manifest.json."""
    from exporter.card import write_outputs

    if not cfg.adapter_only:
        gg.require_tool(gg.CONVERT_HF_SCRIPT)
    else:
        gg.require_tool(gg.CONVERT_LORA_SCRIPT)
    if cfg.adapter_only and run.method == "full":
        raise ExportError(
            f"{run.run_dir} is a full fine-tune (method 'full'): it has no adapter to export "
            "on its own. Export it without --adapter-only (a merged GGUF of the whole model)"
        )
    base_gguf, base_ref = resolve_base_gguf(run, cfg)
    if cfg.adapter_only and base_gguf is None:
        raise ExportError(
            "--adapter-only needs the base GGUF the LoRA is applied to: the run manifest has "
            "no base_model.gguf; set base_gguf in the export config (--set base_gguf=PATH)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = Plan(run, cfg, out_dir, base_gguf, base_ref, echo)
    state = StepState(out_dir / STATE_FILE, fingerprint(run, cfg), echo)
    check_disk(plan, state)
    steps = build_steps(plan)
    total = len(steps) + 1
    for i, (name, fn) in enumerate(steps, start=1):
        key = verify_key(cfg) if name == "verify" else ""
        if state.done(name, key):
            echo(f"[{i}/{total}] {name}: already done, skipped")
            continue
        echo(f"[{i}/{total}] {name} ...")
        start = time.perf_counter()
        outputs, info = fn()
        seconds = time.perf_counter() - start
        state.record(name, seconds, outputs, info, key)
        echo(f"[{i}/{total}] {name}: done in {seconds:.1f} s")
    echo(f"[{total}/{total}] model card and manifest ...")
    manifest = write_outputs(plan, state.data["steps"])
    echo(f"[{total}/{total}] done: {manifest}")
    return manifest
