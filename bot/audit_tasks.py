"""The work of the log-conversations, toxicity and retention jobs (synchronous; run in a thread).

Each function takes an `AuditDB` (the job's own connection), the settings and `now`, and commits
its cursor in the same transaction as the rows it covers, so a crash or restart neither repeats
nor skips work. Cursors are `created_at` marks; every run re-reads `jobs.overlap_seconds` before
the mark (turns committed slightly out of order) and unique indexes drop what was already done.

Review rule (docs/audits.md): a turn is copied into the audit store when its author had turned
`/review on` before it was written, or when its conversation holds a `crisis` event — then the
whole conversation is copied, as the privacy notice says flagged conversations may be reviewed.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from bot.audit import AuditDB, JobResult, redact, save_cursor
from bot.config import Settings
from bot.memory import IDLE_SCOPES_SQL, IDLE_USERS_SQL

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
BATCH_ROWS = 200  # rows per write transaction: a chat's write waits at most one small batch
TOXICITY_ATTRIBUTES = (
    "toxicity", "severe_toxicity", "identity_attack", "insult", "profanity", "threat",
)  # fmt: skip
CRISIS_CONVERSATIONS = "SELECT conversation_id FROM events WHERE kind = 'crisis'"


def _page(db: Any, sql: str, mark: tuple[float, int]) -> list[sqlite3.Row]:
    """One keyset page of `sql` after `mark` = (created_at, id); `sql` ends in `... LIMIT ?`."""
    return db.execute(sql, [mark[0], mark[0], mark[1], BATCH_ROWS]).fetchall()


# --- log-conversations -----------------------------------------------------------------------

NEW_TURNS = (
    "SELECT t.id, t.user_key, t.conversation_id, t.platform, t.role, t.text, t.flagged, "
    "t.created_at, u.review_consent_at AS consent_at, "
    f"t.conversation_id IN ({CRISIS_CONVERSATIONS}) AS crisis "
    "FROM turns t LEFT JOIN users u ON u.user_key = t.user_key "
    "WHERE t.created_at >= ? AND (t.created_at > ? OR t.id > ?) "
    "ORDER BY t.created_at, t.id LIMIT ?"
)
# Re-checked inside the write transaction: the turn still exists and is still reviewable, so a
# /forget or /review off that lands between the read and the write leaves nothing behind.
STILL_REVIEWABLE = (
    "SELECT 1 FROM turns t LEFT JOIN users u ON u.user_key = t.user_key "
    "WHERE t.id = ? AND t.created_at = ? AND (t.conversation_id IN "
    f"({CRISIS_CONVERSATIONS}) OR (u.review_consent_at IS NOT NULL AND "
    "t.created_at >= u.review_consent_at))"
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


def snapshot_conversations(adb: AuditDB, settings: Settings, now: float) -> JobResult:
    """Copy reviewable turns written since the last run into the audit store (redacted).

    Pages are read and redacted outside any transaction; the write re-checks each turn, so a
    `/forget` or `/review off` on the engine's connection is never undone by a copy.
    """
    job = "log-conversations"
    since = _cursor(adb, job).get("since", 0.0)
    result = JobResult(detail={"turns_seen": 0, "skipped_reason": "no review consent"})
    result.detail["crisis_backfill"] = _backfill_crisis(adb, since, now, settings)
    mark = (since - settings.jobs.overlap_seconds if since else 0.0, -1)
    while rows := _page(adb.conn, NEW_TURNS, mark):
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


def _cursor(adb: AuditDB, job: str) -> dict[str, Any]:
    from bot.audit import load_state

    return load_state(adb, job).cursor


# --- toxicity --------------------------------------------------------------------------------


def build_toxicity_scorer(settings: Settings) -> Any:
    """The configured scorer (evaluation.toxicity), built from the `jobs.toxicity_*` keys."""
    from evaluation.config import ToxicityConfig
    from evaluation.toxicity import build_scorer

    j = settings.jobs
    config = ToxicityConfig(
        scorer=j.toxicity_scorer,
        lexicon_path=str(j.toxicity_lexicon_path) if j.toxicity_lexicon_path else None,
        detoxify_checkpoint=(
            str(j.toxicity_detoxify_checkpoint) if j.toxicity_detoxify_checkpoint else None
        ),
    )
    return build_scorer(config)


UNSCORED_TURNS = (
    "SELECT id, user_key, conversation_id, role, text, created_at FROM turns "
    "WHERE created_at >= ? AND (created_at > ? OR id > ?) ORDER BY created_at, id LIMIT ?"
)
UNSCORED_AUDIT_TURNS = (  # remote scorers only see reviewable, redacted copies
    "SELECT turn_id AS id, user_key, conversation_id, role, text, created_at FROM audit_turns "
    "WHERE created_at >= ? AND (created_at > ? OR turn_id > ?) "
    "ORDER BY created_at, turn_id LIMIT ?"
)


def score_toxicity(adb: AuditDB, settings: Settings, now: float, scorer: Any) -> JobResult:
    """Score new user and assistant turns; store per-attribute scores; raise events."""
    job = "toxicity"
    remote = settings.jobs.toxicity_scorer == "perspective"
    query, table = (UNSCORED_AUDIT_TURNS, "audit_turns") if remote else (UNSCORED_TURNS, "turns")
    exists = f"SELECT 1 FROM {table} WHERE {'turn_id' if remote else 'id'} = ? AND created_at = ?"
    since = _cursor(adb, job).get("since", 0.0)
    threshold = settings.jobs.toxicity_threshold
    result = JobResult(detail={"scorer": scorer.name, "events": 0, "source": table})
    mark = (since - settings.jobs.overlap_seconds if since else 0.0, -1)
    while rows := _page(adb.conn, query, mark):
        done = {
            (r[0], r[1])
            for r in adb.query(
                "SELECT turn_id, created_at FROM audit_toxicity WHERE created_at >= ? "
                "AND created_at <= ?",
                [rows[0]["created_at"], rows[-1]["created_at"]],
            )
        }
        todo = [r for r in rows if (r["id"], r["created_at"]) not in done]
        scores = scorer.score([r["text"] or "" for r in todo]) if todo else []
        mark = (rows[-1]["created_at"], rows[-1]["id"])
        with adb.write() as conn:
            for row, score in zip(todo, scores, strict=True):
                if conn.execute(exists, [row["id"], row["created_at"]]).fetchone() is None:
                    result.skipped += 1  # erased (/forget) while it was being scored
                    continue
                result.items += 1
                result.detail["events"] += _store_score(conn, row, score, scorer.name, now,
                                                        threshold)  # fmt: skip
            save_cursor(conn, job, {"since": max(since, mark[0])})
        if len(rows) < BATCH_ROWS:
            break
    return result


def _store_score(
    conn: sqlite3.Connection,
    row: sqlite3.Row,
    score: dict[str, float],
    scorer: str,
    now: float,
    threshold: float,
) -> int:
    """Insert one turn's scores; an over-threshold score adds a `toxicity` event. Returns 0/1."""
    values = [float(score.get(a, 0.0)) for a in TOXICITY_ATTRIBUTES]
    top = max(range(len(values)), key=values.__getitem__)
    inserted = conn.execute(
        "INSERT OR IGNORE INTO audit_toxicity (user_key, conversation_id, turn_id, role, "
        "created_at, scorer, toxicity, severe_toxicity, identity_attack, insult, profanity, "
        "threat, max_attribute, max_score, scored_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [row["user_key"], row["conversation_id"], row["id"], row["role"], row["created_at"],
         scorer, *values, TOXICITY_ATTRIBUTES[top], values[top], now],
    ).rowcount  # fmt: skip
    if not inserted or values[top] <= threshold:
        return 0
    conn.execute(
        "INSERT INTO events (user_key, conversation_id, kind, category, detail, created_at) "
        "VALUES (?, ?, 'toxicity', ?, ?, ?)",
        [row["user_key"], row["conversation_id"], TOXICITY_ATTRIBUTES[top],
         f"{row['role']} {values[top]:.2f}", row["created_at"]],
    )  # fmt: skip
    return 1


# --- retention -------------------------------------------------------------------------------

PURGES: tuple[tuple[str, str, str], ...] = (
    # (table, time column, which cutoff)
    ("turns", "created_at", "memory"),
    ("events", "created_at", "memory"),
    ("risk_state", "updated_at", "memory"),
    ("audit_turns", "created_at", "audit"),
    ("audit_toxicity", "created_at", "audit"),
    ("audit_judgements", "judged_at", "audit"),
    ("audit_conversations", "last_at", "audit"),
    ("job_runs", "started_at", "audit"),
)


def retention_cutoffs(settings: Settings, now: float) -> dict[str, float]:
    """Seconds-since-epoch cutoffs: memory data and audit data (never kept longer)."""
    days = settings.memory.retention_days
    audit_days = min(settings.jobs.audit_retention_days or days, days)
    return {"memory": now - days * SECONDS_PER_DAY, "audit": now - audit_days * SECONDS_PER_DAY}


def purge_expired(adb: AuditDB, settings: Settings, now: float) -> JobResult:
    """Delete rows past retention in small batches, idle users and group scopes without
    turns, then the WAL."""
    cutoffs = retention_cutoffs(settings, now)
    result = JobResult(detail={"cutoffs": cutoffs})
    for table, column, which in PURGES:
        deleted = 0
        while True:
            with adb.write() as conn:
                n = conn.execute(
                    f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
                    f"WHERE {column} < ? LIMIT ?)",
                    [cutoffs[which], BATCH_ROWS],
                ).rowcount
            deleted += n
            if n < BATCH_ROWS:
                break
        result.detail[table] = deleted
        result.items += deleted
    for name, sql in (("chat_scopes", IDLE_SCOPES_SQL), ("users", IDLE_USERS_SQL)):
        with adb.write() as conn:
            n = conn.execute(sql, [cutoffs["memory"]]).rowcount
        result.detail[name] = n
        result.items += n
    adb.checkpoint()
    return result
