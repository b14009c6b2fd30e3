"""What every stage writes next to its output: JSON files (atomically), the git commit, times."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GIT_TIMEOUT_SECONDS = 10


def write_json(path: str | Path, data: Any, *, indent: int = 2) -> None:
    """Write `data` as UTF-8 JSON through a temporary file and a rename, so a reader (or a crash
    halfway) never sees half a file. Paths and other non-JSON values are written as strings."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def git_sha() -> str | None:
    """The project's current commit, or None outside a git checkout (e.g. an installed wheel)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=GIT_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")
