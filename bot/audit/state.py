"""Job state in the `job_state` and `job_runs` tables: cursors, leases, run logs.

A run logs counts and error types only, never text. Each job has one name
(`bot.audit.names.JOB_NAMES`), used for its schedule, its state row and `solace audit run <name>`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from bot.audit.store import AuditDB

ERROR_CHARS = 300


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


def job_cursor(adb: AuditDB, job: str) -> dict[str, Any]:
    """The job's saved cursor ({} before its first run)."""
    return load_state(adb, job).cursor
