"""The retention job (bot.audit.retention): exactly what is past its retention goes."""

from __future__ import annotations

from pathlib import Path

from bot.audit.jobs import JobContext, run_job
from bot.memory import open_memory
from tests.bot.audit.audit_data import (
    DAY,
    NOW,
    SECRET,
    count,
    make_settings,
    populate,
)

# --- retention -------------------------------------------------------------------------------


async def test_retention_deletes_exactly_what_is_expired(db: Path) -> None:
    populate(db, 150, start=NOW - 60 * DAY, end=NOW)
    settings = make_settings(db, audit_retention_days=10)
    ctx = JobContext(settings, db, clock=lambda: NOW)
    for job in ("log-conversations", "toxicity"):
        assert (await run_job(ctx, job)).ok
    memory_cut, audit_cut = NOW - 30 * DAY, NOW - 10 * DAY
    expect = {
        "turns": count(db, "SELECT COUNT(*) FROM turns WHERE created_at >= ?", [memory_cut]),
        "events": count(db, "SELECT COUNT(*) FROM events WHERE created_at >= ?", [memory_cut]),
        "audit_turns": count(
            db, "SELECT COUNT(*) FROM audit_turns WHERE created_at >= ?", [audit_cut]
        ),
        "audit_toxicity": count(
            db, "SELECT COUNT(*) FROM audit_toxicity WHERE created_at >= ?", [audit_cut]
        ),
    }
    before = {t: count(db, f"SELECT COUNT(*) FROM {t}") for t in expect}
    assert all(before[t] > expect[t] > 0 for t in expect)  # something to delete and to keep
    outcome = await run_job(ctx, "retention")
    assert outcome.ok and outcome.result is not None
    for table, remaining in expect.items():
        assert count(db, f"SELECT COUNT(*) FROM {table}") == remaining, table
        assert outcome.result.detail[table] == before[table] - remaining
    assert count(db, "SELECT COUNT(*) FROM audit_conversations WHERE last_at < ?", [audit_cut]) == 0
    # The engine's own purge agrees: nothing left for it to delete.
    memory = open_memory(db, SECRET)
    assert memory.purge_older_than(30, now=NOW) == 0
    memory.db.close()
