"""The audit jobs' own connection to the bot's database file, and their write discipline.

Jobs never share the engine's SQLite connection: each run opens its own connection to the same
WAL file (`audit_connection`) in the worker thread that uses it, and writes in short
`BEGIN IMMEDIATE` transactions of at most `BATCH_ROWS` rows, so a chat's write waits at most one
small batch and a `/forget` can never interleave with a half-copied batch. The tables are
created by `bot.memory.schema`'s `m002_audits` migration.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bot.errors import StorageError
from bot.memory.schema import database_path

BUSY_TIMEOUT_SECONDS = 5.0
# A job holds the write lock at most this share of the time while it catches up (bench_audit).
WRITE_DUTY_CYCLE = 0.25
MIN_WRITE_PAUSE_SECONDS = 0.01
BATCH_ROWS = 200  # rows per write transaction: a chat's write waits at most one small batch


def yield_after_write(held_seconds: float) -> None:
    """Sleep so that the write lock was held at most `WRITE_DUTY_CYCLE` of the time."""
    pause = held_seconds * (1 - WRITE_DUTY_CYCLE) / WRITE_DUTY_CYCLE
    time.sleep(max(pause, MIN_WRITE_PAUSE_SECONDS))


class AuditDB:
    """One job's connection to the bot's database file (autocommit; explicit transactions)."""

    def __init__(self, path: Path) -> None:
        try:
            conn = sqlite3.connect(
                str(path),
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA synchronous = NORMAL")  # per connection; safe with WAL
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open {path} for the audit jobs: {exc}") from exc
        self.conn = conn
        self.path = Path(path)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """All rows of a read."""
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row (None when there is none)."""
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction (BEGIN IMMEDIATE: takes the write lock up front).

        After the commit the job pauses (`yield_after_write`), so a chat waiting for the lock gets
        it: SQLite's busy handler polls with growing sleeps (up to 100 ms), and a job that
        re-took the lock at once after every batch would starve it.
        """
        self.conn.execute("BEGIN IMMEDIATE")
        began = time.perf_counter()
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        yield_after_write(time.perf_counter() - began)

    def checkpoint(self) -> None:
        """Truncate the WAL so deleted bytes leave it (busy readers: it completes later)."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


@contextlib.contextmanager
def audit_connection(path: Path) -> Iterator[AuditDB]:
    """Open an AuditDB for the duration of a block (call it in the thread that uses it)."""
    adb = AuditDB(path)
    try:
        yield adb
    finally:
        adb.close()


def database_file(db: Any) -> Path:
    """The file behind a sqlite-utils Database (the memory store's); in-memory ones are refused."""
    path = database_path(db)
    if path is None:
        raise StorageError("the audit jobs need a database file, not an in-memory database")
    return path


def keyset_page(db: Any, sql: str, mark: tuple[float, int]) -> list[sqlite3.Row]:
    """One page of `sql` after `mark` = (created_at, id); `sql` ends in `... LIMIT ?`."""
    return db.execute(sql, [mark[0], mark[0], mark[1], BATCH_ROWS]).fetchall()
