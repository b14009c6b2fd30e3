"""Fixtures of the operator commands' tests."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from bot.memory import open_memory

PSEUDONYM_SECRET = secrets.token_hex(32)


@pytest.fixture
def env(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """A clean SOLACE_* environment with a migrated database; returns the database path."""
    monkeypatch = clean_env
    db_path = tmp_path / "solace.db"
    open_memory(db_path, PSEUDONYM_SECRET.encode()).db.close()
    monkeypatch.setenv("SOLACE_MEMORY__DB_PATH", str(db_path))
    monkeypatch.setenv("SOLACE_MODEL__BACKEND", "echo")
    monkeypatch.setenv("SOLACE_PSEUDONYM_SECRET", PSEUDONYM_SECRET)
    return db_path
