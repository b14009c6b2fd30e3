"""What every health check returns (`health.py` runs them; `platforms.py` asks the platforms)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]

HTTP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Check:
    """One health check's outcome."""

    name: str
    status: Status
    detail: str
