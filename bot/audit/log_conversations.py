"""The log-conversations job: copy reviewable turns into the audit store, redacted.

Review rule (docs/audits.md): a turn is copied into the audit store (`audit_turns`, one summary
row per conversation in `audit_conversations`) when its author had turned `/review on` before it
was written, or when its conversation holds a `crisis` event — then the whole conversation is
copied, as the privacy notice says flagged conversations may be reviewed.

Like every job's work it is synchronous (run in a thread or the worker process), takes the job's
own `AuditDB`, the settings and `now`, and commits its cursor in the same transaction as the
rows it covers, so a crash or restart neither repeats nor skips work. Cursors are `created_at`
marks; every run re-reads `jobs.overlap_seconds` before the mark (turns committed slightly out
of order) and unique indexes drop what was already done.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence

from bot.audit.redact import redact
from bot.audit.state import JobResult, job_cursor, save_cursor
from bot.audit.store import BATCH_ROWS, AuditDB, keyset_page
from bot.config import Settings

logger = logging.getLogger(__name__)

CRISIS_CONVERSATIONS = "SELECT conversation_id FROM events WHERE kind = 'crisis'"

NEW_TURNS = (
    "SELECT t.id, t.user_key, t.conversation_id, t.platform, t.role, t.text, t.flagged, "
    "t.created_at, u.review_consent_at AS consent_at, "
    f"t.conversation_id IN ({CRISIS_CONVERSATIONS}) AS crisis "
    "FROM turns t LEFT JOIN users u ON u.user_key = t.user_key "
    "WHERE t.created_at >= ? AND (t.created_at > ? OR t.id > ?) "
    "ORDER BY t.created_at, t.id LIMIT ?"
)
# Re-checked inside the write transaction: the turn still exists and is still reviewable, so a
# /forget or /review off that lands between the read and the write leaves nothing behind. The
# crisis test is a correlated EXISTS on the (kind, conversation_id) index: `IN (SELECT …)` would
# list every crisis conversation again for each copied turn, under the write lock.
STILL_REVIEWABLE = (
    "SELECT 1 FROM turns t LEFT JOIN users u ON u.user_key = t.user_key "
    "WHERE t.id = ? AND t.created_at = ? AND (EXISTS (SELECT 1 FROM events e WHERE "
    "e.kind = 'crisis' AND e.conversation_id = t.conversation_id) OR "
    "(u.review_consent_at IS NOT NULL AND t.created_at >= u.review_consent_at))"
)


def _redacted(rows: Sequence[sqlite3.Row]) -> list[tuple[sqlite3.Row, str, int]]:
    """Redact outside any transaction (the CPU work), so the write lock is held briefly."""
    return [(r, *redact(r["text"] or "")) for r in rows]


def _copy_turns(
    conn: sqlite3.Connection, copies: Sequence[tuple[sqlite3.Row, str, int]], now: float
) -> set[str]:
    """Insert redacted copies still reviewable (duplicates ignored); returns touched ids."""
    touched: set[str] = set()
    for r, text, count in copies:
        inserted = conn.execute(
            "INSERT OR IGNORE INTO audit_turns (user_key, conversation_id, turn_id, role, text, "
            "redactions, flagged, created_at, snapshot_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? "
            f"WHERE EXISTS ({STILL_REVIEWABLE})",
            [r["user_key"], r["conversation_id"], r["id"], r["role"], text, count,
             r["flagged"] or 0, r["created_at"], now, r["id"], r["created_at"]],
        ).rowcount  # fmt: skip
        if inserted:
            touched.add(r["conversation_id"])
    return touched


def _refresh_conversations(
    conn: sqlite3.Connection, touched: set[str], platforms: dict[str, tuple[str, str]], now: float
) -> None:
    """Recompute the summary row of each conversation that gained turns."""
    for cid in touched:
        user_key, platform = platforms[cid]
        crisis = conn.execute(
            "SELECT 1 FROM events WHERE kind = 'crisis' AND conversation_id = ? LIMIT 1", [cid]
        ).fetchone()
        conn.execute(
            "INSERT INTO audit_conversations (conversation_id, user_key, platform, basis, "
            "first_at, last_at, turns, chars, snapshot_at) "
            "SELECT ?, ?, ?, ?, MIN(created_at), MAX(created_at), COUNT(*), "
            "SUM(LENGTH(text)), ? FROM audit_turns WHERE conversation_id = ? "
            "ON CONFLICT(conversation_id) DO UPDATE SET basis = CASE WHEN excluded.basis = "
            "'crisis' THEN 'crisis' ELSE basis END, first_at = excluded.first_at, "
            "last_at = excluded.last_at, turns = excluded.turns, chars = excluded.chars, "
            "snapshot_at = excluded.snapshot_at",
            [cid, user_key, platform, "crisis" if crisis else "consent", now, cid],
        )


def _eligible(row: sqlite3.Row) -> bool:
    consent = row["consent_at"] is not None and row["created_at"] >= row["consent_at"]
    return bool(row["crisis"]) or consent


def log_conversations(adb: AuditDB, settings: Settings, now: float) -> JobResult:
    """Copy reviewable turns written since the last run into the audit store (redacted).

    Pages are read and redacted outside any transaction; the write re-checks each turn, so a
    `/forget` or `/review off` on the engine's connection is never undone by a copy.
    """
    job = "log-conversations"
    since = job_cursor(adb, job).get("since", 0.0)
    result = JobResult(detail={"turns_seen": 0, "skipped_reason": "no review consent"})
    result.detail["crisis_backfill"] = _backfill_crisis(adb, since, now, settings)
    mark = (since - settings.jobs.overlap_seconds if since else 0.0, -1)
    while rows := keyset_page(adb.conn, NEW_TURNS, mark):
        keep = [r for r in rows if _eligible(r)]
        copies = _redacted(keep)
        with adb.write() as conn:
            touched = _copy_turns(conn, copies, now)
            owners = {r["conversation_id"]: (r["user_key"], r["platform"]) for r in keep}
            _refresh_conversations(conn, touched, owners, now)
            mark = (rows[-1]["created_at"], rows[-1]["id"])
            save_cursor(conn, job, {"since": max(since, mark[0])})
        fresh = [r for r in rows if r["created_at"] > since]
        result.detail["turns_seen"] += len(fresh)
        result.skipped += sum(1 for r in fresh if not _eligible(r))
        result.items += sum(1 for r in fresh if _eligible(r))
        if len(rows) < BATCH_ROWS:
            break
    return result


def _backfill_crisis(adb: AuditDB, since: float, now: float, settings: Settings) -> int:
    """Copy whole conversations that got a crisis event since the mark (earlier turns too)."""
    scan_from = since - settings.jobs.overlap_seconds if since else 0.0
    found = adb.query(
        "SELECT DISTINCT user_key, conversation_id FROM events WHERE kind = 'crisis' "
        "AND conversation_id IS NOT NULL AND created_at >= ?",
        [scan_from],
    )
    copied = 0
    for key, cid in found:
        rows = adb.query(  # (user_key, conversation_id) uses the turns index
            "SELECT t.*, NULL AS consent_at, 1 AS crisis FROM turns t WHERE t.user_key = ? "
            "AND t.conversation_id = ? AND t.created_at <= ? ORDER BY t.created_at, t.id",
            [key, cid, since if since else now],
        )
        if not rows:
            continue
        copies = _redacted(rows)
        with adb.write() as conn:
            touched = _copy_turns(conn, copies, now)
            _refresh_conversations(
                conn, touched, {cid: (rows[0]["user_key"], rows[0]["platform"])}, now
            )
        copied += len(touched)
    return copied
