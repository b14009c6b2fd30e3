"""What a run leaves behind: checkpoints, loss history, the loss curve and manifest.json."""

from __future__ import annotations

import contextlib
import csv
import logging
import random
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.runfiles import git_sha, write_json

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "step",
    "epoch",
    "train_loss",
    "eval_loss",
    "lr",
    "tokens",
    "tokens_per_s",
    "elapsed_s",
)
CHECKPOINT_PREFIX = "step-"
BEST_DIR = "best"  # checkpoints/best/weights.pt: the best eval step's weights (early stopping)


@dataclass
class TrainState:
    """Where training is: enough, with the RNG states, to continue exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # next micro-batch of this epoch's fixed batch order
    tokens: int = 0
    elapsed_s: float = 0.0
    last_eval_loss: float | None = None
    best_eval_loss: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0  # evals in a row without a new best (early stopping)
    history: list[dict[str, Any]] = field(default_factory=list)


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(CHECKPOINT_PREFIX)]
    found = [p for p in found if (p / "state.pt").is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)))


def save_checkpoint(run_dir: Path, payload: dict[str, Any], keep: int) -> Path:
    """Write a checkpoint atomically (tmp dir, then rename) and prune old ones."""
    import torch

    step = payload["state"]["step"]
    final = run_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{step}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(payload, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """loss_history.csv: one row per logged step and per eval."""
    with (run_dir / "loss_history.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in CSV_COLUMNS})


def plot_losses(run_dir: Path, rows: list[dict[str, Any]], title: str) -> Path:
    """loss_curve.png: train and eval loss against steps (like the papers' Figures 5/6)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["train_loss"]) for r in rows if r.get("train_loss") not in (None, "")]
    evals = [(r["step"], r["eval_loss"]) for r in rows if r.get("eval_loss") not in (None, "")]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1.2)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss", linewidth=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy per target token")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = run_dir / "loss_curve.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> Path:
    """manifest.json, the contract the exporter reads (docs/architecture.md)."""
    base: dict[str, Any] = {
        "stage": "train",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    base["git_sha"] = git_sha()
    path = run_dir / "manifest.json"
    write_json(path, {**base, **manifest})
    return path


def state_dict(state: TrainState) -> dict[str, Any]:
    """TrainState as a plain dict for torch.save."""
    return asdict(state)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states (CUDA too when present)."""
    import numpy as np
    import torch

    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state saved."""
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class stop_on_signals:  # noqa: N801 - used like contextlib's lower-case managers
    """Ctrl-C / SIGTERM ask the loop to stop after the current step (a 2nd Ctrl-C aborts)."""

    def __init__(self, flag: dict[str, bool]) -> None:
        self.flag = flag
        self.old: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.flag.get("requested") and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.flag["requested"] = True

    def __enter__(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self.old[sig] = signal.signal(sig, self._handle)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
