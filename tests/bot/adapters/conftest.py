"""Fixtures of the adapter tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db_path(memory, tmp_path: Path) -> Path:
    """The real SQLite file behind the `memory` fixture."""
    return tmp_path / "memory.db"
