"""A test's environment holds only what the test sets: no SOLACE_* variable from the shell that
runs pytest, no ./config.toml, no real home folder."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

# Besides SOLACE_*, what decides where the bot keeps its files.
LOCATION_VARIABLES = ("XDG_DATA_HOME",)


def without_solace(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """A copy of `environ` without SOLACE_* or location variables (for a child process)."""
    return {
        k: v
        for k, v in environ.items()
        if not k.startswith("SOLACE_") and k not in LOCATION_VARIABLES
    }


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Clear SOLACE_* and the location variables, use tmp_path as home and working folder."""
    for name in list(os.environ):
        if name.startswith("SOLACE_") or name in LOCATION_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # no stray ./config.toml
