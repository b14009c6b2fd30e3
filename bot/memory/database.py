"""Opening the memory database file: permissions, WAL, migrations, the secret's key check."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from sqlite_utils import Database

from bot.errors import ConfigError, StorageError
from bot.memory.schema import migrations
from bot.memory.store import BUSY_TIMEOUT_MS, MemoryStore


def open_memory(
    path: Path,
    secret: bytes,
    *,
    clock: Callable[[], float] = time.time,
    busy_timeout_s: float = BUSY_TIMEOUT_MS / 1000,
) -> MemoryStore:
    """Open (creating if needed) the database file in WAL mode, apply migrations, check the
    secret against the database's key check.

    Raises StorageError naming the file when it cannot be created, read or migrated, and
    ConfigError when the secret is not the one the database was written with.
    """
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        existed = path.exists()
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=busy_timeout_s)
        if not existed:
            os.chmod(path, 0o600)  # SQLite gives the -wal/-shm files the same mode
        conn.execute("PRAGMA schema_version").fetchone()  # fails here if it is not a database
        db = Database(conn)
        db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; commits skip the fsync
    except (OSError, sqlite3.DatabaseError) as exc:
        raise StorageError(f"cannot open the database {path}: {exc}") from exc
    try:
        store = MemoryStore(db, secret, clock=clock, busy_timeout_s=busy_timeout_s)
    except StorageError as exc:
        db.close()
        raise StorageError(f"{path}: {exc}") from exc
    except ConfigError:
        db.close()
        raise
    store.checkpoint()  # finishes an erasure whose WAL clean-up a reader blocked before a restart
    return store


def migrate_database(path: Path) -> tuple[list[str], list[str]]:
    """Apply pending migrations to the file; returns (newly applied, all applied) names."""
    path = Path(path).expanduser()
    if not path.parent.is_dir():
        raise StorageError(f"the directory of {path} does not exist")
    try:
        with Database(path) as db:
            db.enable_wal()
            pending = [m.name for m in migrations.pending(db)]
            migrations.apply(db)
            applied = [m.name for m in migrations.applied(db)]
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot migrate {path}: {exc}") from exc
    return pending, applied
