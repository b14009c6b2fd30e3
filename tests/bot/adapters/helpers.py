"""What the adapter tests read back from the real SQLite file, and waiting for it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

GROUP_ID = -100123  # a Telegram supergroup id (negative, as Telegram gives them)


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll `predicate` until it holds (for state outside the fake server, like the DB)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def stored_texts(db_path: Path, role: str | None = None) -> list[str]:
    """Turn texts in the real SQLite file, oldest first."""
    with sqlite3.connect(db_path) as conn:
        sql = "SELECT text FROM turns" + (" WHERE role = ?" if role else "") + " ORDER BY id"
        return [row[0] for row in conn.execute(sql, (role,) if role else ())]


def row_counts(db_path: Path, user_key: str) -> dict[str, int]:
    """Rows that belong to `user_key` in every table that has the column."""
    with sqlite3.connect(db_path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {}
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            if "user_key" in columns:
                sql = f"SELECT COUNT(*) FROM {table} WHERE user_key = ?"
                counts[table] = conn.execute(sql, (user_key,)).fetchone()[0]
        return counts
