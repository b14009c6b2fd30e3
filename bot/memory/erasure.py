"""`/forget` that either happens completely or says it did not (issue 15, items 4 and 5).

- The deletion runs in one `BEGIN IMMEDIATE` transaction on a connection of its own, so it
  waits for another writer (SQLite's busy timeout applies) and can run in a worker thread. A
  lock that stays busy is retried `ERASE_ATTEMPTS` times with backoff; then StorageError says
  nothing was erased, and the person is asked to try again.
- Deleted text also lives in older WAL frames until the WAL is checkpointed and truncated, and a
  reader holding an old snapshot blocks that. The TRUNCATE checkpoint is retried for a few
  seconds inline; if a reader still holds it, `Erasure.wal_clean` is False, the person is told
  the erasure is still finishing, and `WalCleanup` keeps retrying in the background (bounded;
  a restart retries once more when the database is opened).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.errors import StorageError
from bot.memory.schema import truncate_wal, user_tables, write_transaction

logger = logging.getLogger(__name__)

ERASE_ATTEMPTS = 3  # each waits up to the busy timeout for the write lock
ERASE_FIRST_BACKOFF_SECONDS = 0.5
ERASE_CHECKPOINT_SECONDS = 2.0  # inline; WalCleanup keeps retrying in the background
CHECKPOINT_TRY_TIMEOUT_MS = 200  # one TRUNCATE try waits this long for readers
CLEANUP_SECONDS = 600.0
CLEANUP_TRY_SECONDS = 1.0
CLEANUP_FIRST_PAUSE_SECONDS = 0.2
CLEANUP_MAX_PAUSE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure did.

    Args:
        deleted: rows deleted per table (committed).
        wal_clean: the WAL was checkpointed and truncated, so no copy of the deleted rows is
            left in the database file or its WAL. False while a reader blocks it.
    """

    deleted: dict[str, int]
    wal_clean: bool


@contextlib.contextmanager
def erasure_connection(path: Path, busy_timeout_s: float) -> Iterator[sqlite3.Connection]:
    """A short-lived connection for one erasure (use it in the thread that opened it)."""
    conn = sqlite3.connect(str(path), timeout=busy_timeout_s)
    try:
        conn.execute("PRAGMA secure_delete = ON")  # a per-connection setting
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        yield conn
    except sqlite3.OperationalError as exc:
        raise StorageError(f"the erasure could not finish: {exc}") from exc
    finally:
        conn.close()


def erase_user(conn: sqlite3.Connection, user_key: str, checkpoint_seconds: float) -> Erasure:
    """Delete the user's rows from every per-user table, then try to truncate the WAL."""
    deleted = _delete_rows(conn, user_key)
    clean = checkpoint_now(conn, checkpoint_seconds)
    if not clean:
        logger.warning("erasure committed; a reader still blocks truncating the WAL")
    return Erasure(deleted, clean)


def checkpoint_now(conn: sqlite3.Connection, seconds: float) -> bool:
    """Short TRUNCATE tries for up to `seconds`; True once the WAL is empty."""
    before = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_TRY_TIMEOUT_MS}")
    try:
        return truncate_wal(conn, deadline_s=seconds)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(before)}")


def _delete_rows(conn: sqlite3.Connection, user_key: str) -> dict[str, int]:
    pause = ERASE_FIRST_BACKOFF_SECONDS
    for attempt in range(1, ERASE_ATTEMPTS + 1):
        try:
            with write_transaction(conn):
                return {
                    table: conn.execute(
                        f"DELETE FROM [{table}] WHERE user_key = ?", [user_key]
                    ).rowcount
                    for table in user_tables(conn)
                }
        except StorageError:
            if attempt == ERASE_ATTEMPTS:
                raise
            logger.warning("erasure attempt %d found the database busy; retrying", attempt)
            time.sleep(pause)
            pause *= 2
    raise AssertionError("unreachable")  # pragma: no cover


class WalCleanup:
    """Retries truncating the WAL in the background after an erasure a reader blocked.

    Each try runs in a worker thread and lasts about `CLEANUP_TRY_SECONDS`; the pauses between
    them are on the event loop, so shutting down cancels it at once. One task at a time.
    """

    def __init__(self, try_once: Callable[[float], bool], where: object = None) -> None:
        self._try_once = try_once
        self._where = where
        self._task: asyncio.Task[bool] | None = None

    def start(self) -> None:
        """Begin retrying (a no-op while a previous clean-up is still running)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def wait(self) -> bool:
        """Wait for the current clean-up, if any; True when the WAL is clean."""
        return True if self._task is None else await self._task

    async def _run(self) -> bool:
        give_up = time.monotonic() + CLEANUP_SECONDS
        pause = CLEANUP_FIRST_PAUSE_SECONDS
        done = False
        while not done and time.monotonic() < give_up:
            await asyncio.sleep(pause)
            pause = min(pause * 2, CLEANUP_MAX_PAUSE_SECONDS)
            try:
                done = await asyncio.to_thread(self._try_once, CLEANUP_TRY_SECONDS)
            except StorageError as exc:
                logger.error("WAL clean-up after an erasure failed: %s", exc)
        if done:
            logger.info("WAL truncated: the erased rows are gone from every file")
        else:
            logger.error(
                "a reader blocked truncating the WAL for %.0f s: erased text may remain in the "
                "WAL of %s until the next erasure, retention run or restart truncates it",
                CLEANUP_SECONDS,
                self._where,
            )
        return done
