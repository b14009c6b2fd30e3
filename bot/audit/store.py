"""The audit store's plumbing: redaction, a job's own database connection, job state and leases,
and the stratified sample the judge draws.

Jobs never share the engine's SQLite connection: each run opens its own connection to the same
WAL file (`audit_connection`) in the worker thread that uses it, and writes in short
`BEGIN IMMEDIATE` transactions, so a chat's write waits at most one small batch and a `/forget`
can never interleave with a half-copied batch. Job state (last success, cursor, failures, lease)
lives in the `job_state` table and each run is logged in `job_runs` (counts and error types only,
never text). The tables are created by `bot.memory`'s `m002_audits` migration.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bot.errors import StorageError

BUSY_TIMEOUT_SECONDS = 5.0
# A job holds the write lock at most this share of the time while it catches up (bench_audit).
WRITE_DUTY_CYCLE = 0.25
MIN_WRITE_PAUSE_SECONDS = 0.01
ERROR_CHARS = 300
T = TypeVar("T")

# --- redaction -------------------------------------------------------------------------------

COMMON_TLDS = (
    "com|org|net|edu|gov|io|co|uk|de|fr|es|it|nl|ru|ca|au|in|jp|cn|br|info|biz|me|app|dev|ly|"
    "gg|tv|xyz|online|site|link|to|us|eu|ch|se|no|fi|dk|pl|be|at|nz|ie|za|mx|ar|tk|ai"
)
REDACTIONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("[url]", re.compile(r"\b(?:https?|ftp|tg|discord)://\S+|\bwww\.\S+", re.IGNORECASE)),
    ("[email]", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)),
    (
        "[url]",
        re.compile(
            rf"\b(?:[a-z0-9-]+\.)+(?:{COMMON_TLDS})\b(?:/\S*)?|\b(?:[a-z0-9-]+\.)+[a-z]{{2,24}}/\S*",
            re.IGNORECASE,
        ),
    ),
    ("[handle]", re.compile(r"(?<![\w@])@[A-Za-z0-9_]{3,32}\b")),
    # Any run of 7+ digits with common separators: phone numbers, but also platform ids and
    # card numbers. Over-redacting a date or an amount is the safe mistake.
    ("[number]", re.compile(r"(?<![\w])\+?\d(?:[\s().-]{0,2}\d){6,}")),
)


def redact(text: str) -> tuple[str, int]:
    """`text` with URLs, emails, @handles and phone-like numbers replaced; (text, replacements)."""
    count = 0
    for token, pattern in REDACTIONS:
        text, n = pattern.subn(token, text)
        count += n
    return text, count


# --- connections -----------------------------------------------------------------------------


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
    for row in db.execute("PRAGMA database_list").fetchall():
        if row[1] == "main" and row[2]:
            return Path(row[2])
    raise StorageError("the audit jobs need a database file, not an in-memory database")


# --- job state -------------------------------------------------------------------------------


@dataclass
class JobResult:
    """What one run did: items processed, items skipped (and why), extra counts."""

    items: int = 0
    skipped: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobState:
    """A job's persisted state."""

    job: str
    last_success_at: float | None
    last_started_at: float | None
    cursor: dict[str, Any]
    failures: int
    last_error: str | None
    lease_owner: str | None
    lease_until: float | None


def load_state(adb: AuditDB, job: str) -> JobState:
    """The job's state (an empty one when it never ran)."""
    rows = adb.query("SELECT * FROM job_state WHERE job = ?", [job])
    if not rows:
        return JobState(job, None, None, {}, 0, None, None, None)
    r = rows[0]
    try:
        cursor = json.loads(r["cursor"]) if r["cursor"] else {}
    except json.JSONDecodeError:
        cursor = {}  # a damaged cursor restarts from the beginning; dedupe prevents repeats
    return JobState(
        job,
        r["last_success_at"],
        r["last_started_at"],
        cursor if isinstance(cursor, dict) else {},
        r["failures"] or 0,
        r["last_error"],
        r["lease_owner"],
        r["lease_until"],
    )


def _ensure_row(conn: sqlite3.Connection, job: str) -> None:
    conn.execute("INSERT OR IGNORE INTO job_state (job, failures) VALUES (?, 0)", [job])


def save_cursor(conn: sqlite3.Connection, job: str, cursor: dict[str, Any]) -> None:
    """Store the cursor inside the caller's write transaction (with the work it covers)."""
    _ensure_row(conn, job)
    conn.execute("UPDATE job_state SET cursor = ? WHERE job = ?", [json.dumps(cursor), job])


def acquire_lease(adb: AuditDB, job: str, owner: str, now: float, seconds: float) -> bool:
    """Take the job's cross-process lock unless another live owner holds it."""
    with adb.write() as conn:
        _ensure_row(conn, job)
        taken = conn.execute(
            "UPDATE job_state SET lease_owner = ?, lease_until = ?, last_started_at = ? "
            "WHERE job = ? AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)",
            [owner, now + seconds, now, job, now, owner],
        ).rowcount
    return taken == 1


def release_lease(adb: AuditDB, job: str, owner: str) -> None:
    """Give the lock back (only if we still hold it)."""
    with adb.write() as conn:
        conn.execute(
            "UPDATE job_state SET lease_owner = NULL, lease_until = NULL "
            "WHERE job = ? AND lease_owner = ?",
            [job, owner],
        )


def record_run(
    adb: AuditDB,
    job: str,
    started: float,
    finished: float,
    result: JobResult | None,
    error: str | None,
) -> int:
    """Log a run in `job_runs` and update success/failure state; returns consecutive failures."""
    ok = error is None
    with adb.write() as conn:
        _ensure_row(conn, job)
        conn.execute(
            "INSERT INTO job_runs (job, started_at, finished_at, ok, items, skipped, detail, "
            "error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                job,
                started,
                finished,
                int(ok),
                result.items if result else 0,
                result.skipped if result else 0,
                json.dumps(result.detail if result else {}, default=str),
                error[:ERROR_CHARS] if error else None,
            ],
        )
        if ok:
            conn.execute(
                "UPDATE job_state SET last_success_at = ?, failures = 0, last_error = NULL "
                "WHERE job = ?",
                [finished, job],
            )
        else:
            conn.execute(
                "UPDATE job_state SET failures = failures + 1, last_error = ? WHERE job = ?",
                [error[:ERROR_CHARS] if error else None, job],
            )
        return int(
            conn.execute("SELECT failures FROM job_state WHERE job = ?", [job]).fetchone()[0]
        )


# --- sampling --------------------------------------------------------------------------------


def stratified_sample(
    items: Sequence[T], size: int, key: Callable[[T], float], strata: int, rng: random.Random
) -> list[tuple[int, T]]:
    """Draw `size` items, spread over `strata` equal-count strata of `key` (e.g. length).

    Items are sorted by `key` and cut into contiguous strata of (nearly) equal size; each
    stratum gets its proportional share of the sample (largest remainder), drawn without
    replacement. Returns (stratum index, item) pairs, shortest stratum first.
    """
    if size <= 0 or not items:
        return []
    ordered = sorted(items, key=key)
    strata = max(1, min(strata, len(ordered)))
    bounds = [round(i * len(ordered) / strata) for i in range(strata + 1)]
    groups = [ordered[bounds[i] : bounds[i + 1]] for i in range(strata)]
    size = min(size, len(ordered))
    quotas = [size * len(g) / len(ordered) for g in groups]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(strata), key=lambda i: quotas[i] - counts[i], reverse=True)
    for i in by_remainder[: size - sum(counts)]:
        counts[i] += 1
    sample: list[tuple[int, T]] = []
    for index, (group, count) in enumerate(zip(groups, counts, strict=True)):
        sample.extend((index, item) for item in rng.sample(group, count))
    return sample
