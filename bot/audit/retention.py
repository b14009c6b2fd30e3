"""The retention job: delete what is past its retention, in small batches, then the WAL.

Memory data (turns, events) goes after `memory.retention_days`; audit data after
`jobs.audit_retention_days`, never later than memory data. Idle people and group scopes without
turns go too.
"""

from __future__ import annotations

from bot.audit.state import JobResult
from bot.audit.store import BATCH_ROWS, AuditDB
from bot.config import Settings
from bot.memory.schema import IDLE_SCOPES_SQL, IDLE_USERS_SQL

SECONDS_PER_DAY = 86_400

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
    # The web console's rows (docs/web.md), when its tables exist: moderators' queue state,
    # notes and labels about a person, and the console's own access log, kept as long as the
    # audit copies they refer to.
    ("web_queue", "updated_at", "audit"),
    ("web_notes", "created_at", "audit"),
    ("web_labels", "created_at", "audit"),
    ("web_audit", "at", "audit"),
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
    tables = {r[0] for r in adb.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table, column, which in PURGES:
        if table not in tables:
            continue
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
