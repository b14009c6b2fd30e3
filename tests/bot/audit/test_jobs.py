"""Scheduled audit jobs on a real temporary SQLite file full of generated conversations.

Jobs run with an injected clock; the judge talks to a scripted OpenAI-compatible server on
127.0.0.1 (`evaluation.localserver`); the scheduler is the real APScheduler on the test's loop.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.audit.jobs import JobContext, build_scheduler, build_triggers, retry_delay, run_job
from bot.audit.state import acquire_lease
from bot.audit.store import audit_connection
from bot.engine import build_engine
from bot.errors import ConfigError
from bot.memory import open_memory
from bot.memory.schema import user_tables
from bot.messages import IncomingMessage
from tests.bot.audit.audit_data import (
    DAY,
    EMAIL,
    NOW,
    PLATFORM_ID,
    SECRET,
    count,
    load_state_of,
    make_settings,
    populate,
    rows,
)
from tests.fakes import command_text

# --- log-conversations -----------------------------------------------------------------------


def expected_audit_turns(db: Path) -> int:
    """Turns the review rule admits: consent given before the turn, or a crisis conversation."""
    return count(
        db,
        "SELECT COUNT(*) FROM turns t JOIN users u USING (user_key) WHERE "
        "(u.review_consent_at IS NOT NULL AND t.created_at >= u.review_consent_at) OR "
        "t.conversation_id IN (SELECT conversation_id FROM events WHERE kind = 'crisis')",
    )


async def test_log_conversations_cursor_advances_and_a_restart_resumes(db: Path) -> None:
    pop = populate(db, 120, start=NOW - 3 * DAY, end=NOW - DAY)
    settings = make_settings(db)
    first = await run_job(JobContext(settings, db, clock=lambda: NOW), "log-conversations")
    assert first.ok and first.result is not None
    copied = count(db, "SELECT COUNT(*) FROM audit_turns")
    assert copied == expected_audit_turns(db) == first.result.items
    assert first.result.skipped == pop.turns - copied  # every other turn: no consent
    # Only reviewable conversations, and every crisis conversation whole.
    keys = {r[0] for r in rows(db, "SELECT DISTINCT user_key FROM audit_turns")}
    crisis_keys = {pop.conversations[c][0] for c in pop.crisis_conversations}
    assert keys == pop.consenting | crisis_keys
    for cid in pop.crisis_conversations:
        assert (
            count(db, "SELECT COUNT(*) FROM audit_turns WHERE conversation_id = ?", [cid])
            == (pop.conversations[cid][1])
        )
    texts = " ".join(r[0] for r in rows(db, "SELECT text FROM audit_turns"))
    assert EMAIL not in texts and PLATFORM_ID not in texts and "[email]" in texts
    mark = load_state_of(db, "log-conversations").cursor["since"]
    assert mark == rows(db, "SELECT MAX(created_at) FROM turns")[0][0]  # cursor advanced

    # A "restart": a new context (new lease owner, new locks); nothing new -> nothing copied.
    again = await run_job(JobContext(settings, db, clock=lambda: NOW + 60), "log-conversations")
    assert again.ok and again.result is not None and again.result.items == 0
    assert count(db, "SELECT COUNT(*) FROM audit_turns") == copied

    # More conversations arrive later: exactly their reviewable turns are added.
    populate_more(db, 40, start=NOW - DAY + 10, end=NOW, seed=99)
    later = await run_job(JobContext(settings, db, clock=lambda: NOW + 120), "log-conversations")
    assert later.ok and later.result is not None
    assert count(db, "SELECT COUNT(*) FROM audit_turns") == expected_audit_turns(db)
    assert later.result.items == expected_audit_turns(db) - copied > 0
    assert count(db, "SELECT COUNT(*) FROM job_runs WHERE job = 'log-conversations'") == 3


def populate_more(db: Path, n: int, *, start: float, end: float, seed: int) -> None:
    """Add conversations of new users to an existing database (distinct pseudonyms)."""
    import sqlite3

    from tests.bot.audit.audit_data import populate as fill

    other = db.with_name(f"extra-{seed}.db")
    fill(other, n, start=start, end=end, seed=seed)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("ATTACH DATABASE ? AS extra", [str(other)])
        conn.execute(
            "INSERT INTO users (user_key, platform, conversation_id, notice_seen_at, created_at, "
            "last_seen_at, review_consent_at) SELECT 'x' || user_key, platform, conversation_id, "
            "notice_seen_at, created_at, last_seen_at, review_consent_at FROM extra.users"
        )
        for table, cols in (
            ("turns", "conversation_id, platform, role, text, tokens, flagged, created_at"),
            ("events", "conversation_id, kind, category, created_at"),
        ):
            conn.execute(
                f"INSERT INTO {table} (user_key, {cols}) SELECT 'x' || user_key, {cols} "
                f"FROM extra.{table}"
            )
    conn.execute("DETACH DATABASE extra")
    conn.close()


async def test_review_consent_and_crisis_rule_through_the_engine(db: Path) -> None:
    """/review on|off via the engine; a later crisis makes the whole conversation reviewable."""
    clock = [NOW]
    settings = make_settings(db)
    memory = open_memory(db, SECRET, clock=lambda: clock[0])
    engine = build_engine(settings, memory=memory, clock=lambda: clock[0])

    async def say(user: str, text: str) -> None:
        clock[0] += 10
        msg = IncomingMessage("telegram", user, text)
        if text.startswith("/"):
            assert await command_text(engine, text, platform="telegram", user_id=user)
        else:
            async for _ in engine.respond(msg):
                pass

    async def snapshot() -> None:
        clock[0] += 10
        outcome = await run_job(
            JobContext(settings, db, clock=lambda: clock[0]), "log-conversations"
        )
        assert outcome.ok, outcome.error

    alice, bob = memory.pseudonym("telegram", "1"), memory.pseudonym("telegram", "2")
    await say("1", "hello, before consent")
    await say("1", "/review on")
    await say("1", f"after consent, mail {EMAIL}")
    await say("2", "I had a rough day")  # bob never consents
    await snapshot()
    assert {r[0] for r in rows(db, "SELECT user_key FROM audit_turns")} == {alice}
    assert count(db, "SELECT COUNT(*) FROM audit_turns") == 2  # alice's turn + the reply
    assert "[email]" in rows(db, "SELECT text FROM audit_turns WHERE role = 'user'")[0][0]

    await say("2", "I want to kill myself")  # a crisis: bob's whole conversation is reviewable
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'crisis'") == 1
    await snapshot()
    bob_turns = count(db, "SELECT COUNT(*) FROM turns WHERE user_key = ?", [bob])
    assert count(db, "SELECT COUNT(*) FROM audit_turns WHERE user_key = ?", [bob]) == bob_turns
    assert rows(db, "SELECT basis FROM audit_conversations WHERE user_key = ?", [bob]) == [
        ("crisis",)
    ]

    await say("1", "/review off")  # withdrawing deletes alice's consent-based copies
    assert count(db, "SELECT COUNT(*) FROM audit_turns WHERE user_key = ?", [alice]) == 0
    await say("1", "and after withdrawing")
    await snapshot()
    assert count(db, "SELECT COUNT(*) FROM audit_turns WHERE user_key = ?", [alice]) == 0
    assert memory.review_consent(alice) is False
    memory.db.close()


async def test_forget_user_erases_every_audit_table(db: Path) -> None:
    pop = populate(db, 60, start=NOW - 2 * DAY, end=NOW - DAY, consent_share=1.0)
    settings = make_settings(db)
    ctx = JobContext(settings, db, clock=lambda: NOW)
    for job in ("log-conversations", "toxicity"):
        assert (await run_job(ctx, job)).ok
    key = next(iter(pop.consenting))
    with audit_connection(db) as adb, adb.write() as conn:  # a judgement row for this user too
        conn.execute(
            "INSERT INTO audit_judgements (user_key, conversation_id, judge_model, judged_at) "
            "VALUES (?, 'c', 'm', ?)",
            [key, NOW],
        )
    memory = open_memory(db, SECRET)
    audit_tables = {"audit_conversations", "audit_turns", "audit_toxicity", "audit_judgements"}
    assert audit_tables <= set(user_tables(memory.db.conn))
    for table in audit_tables:
        assert count(db, f"SELECT COUNT(*) FROM {table} WHERE user_key = ?", [key]) > 0
    deleted = memory.forget_user(key).deleted
    memory.db.close()
    for table in audit_tables | {"turns", "events", "users"}:
        assert count(db, f"SELECT COUNT(*) FROM {table} WHERE user_key = ?", [key]) == 0
    assert all(deleted[t] > 0 for t in audit_tables)


# --- locking, scheduler, retries, catch-up ---------------------------------------------------


async def test_a_job_never_runs_twice_at_once(db: Path) -> None:
    populate(db, 20, start=NOW - 2 * DAY, end=NOW - DAY)
    ctx = JobContext(make_settings(db), db, clock=lambda: NOW)
    first, second = await asyncio.gather(run_job(ctx, "toxicity"), run_job(ctx, "toxicity"))
    assert sorted((first.busy, second.busy)) == [False, True]
    # Another process (e.g. `solace audit run`) holding the lease: this one skips.
    with audit_connection(db) as adb:
        assert acquire_lease(adb, "retention", "other-process", NOW, 600)
    busy = await run_job(ctx, "retention")
    assert busy.busy and not busy.ok
    # The lease expires (a crashed holder): the job runs again.
    later = JobContext(make_settings(db), db, clock=lambda: NOW + 601)
    assert (await run_job(later, "retention")).ok


def test_triggers_follow_config_and_bad_cron_is_a_clear_error(db: Path) -> None:
    triggers = build_triggers(make_settings(db, judge_cron="", report_weekly_cron="0 7 * * 0"))
    assert "judge" not in triggers and {"log-conversations", "report-weekly"} <= set(triggers)
    with pytest.raises(ConfigError, match="jobs.toxicity_cron"):
        build_triggers(make_settings(db, toxicity_cron="every five minutes"))
    assert retry_delay(1, 60) == 60 and retry_delay(3, 60) == 240 and retry_delay(20, 60) == 3600


async def test_scheduler_runs_jobs_and_retries_a_failure_with_backoff(db: Path) -> None:
    populate(db, 10, start=NOW - 2 * DAY, end=NOW - DAY)
    memory = open_memory(db, SECRET)
    # detoxify without a checkpoint: the toxicity job fails at once, every time.
    settings = make_settings(db, toxicity_scorer="detoxify", retry_max=2, retry_base_seconds=0.05)
    scheduler = build_scheduler(None, memory, settings)
    scheduler.start()  # job defaults are applied when the scheduler starts
    try:
        job = scheduler.get_job("toxicity")
        assert job.coalesce is True and job.max_instances == 1
        assert job.misfire_grace_time == settings.jobs.misfire_grace_seconds
        ids = {j.id for j in scheduler.get_jobs()}
        assert {"log-conversations", "judge", "retention", "report-daily", "report-weekly"} <= ids
        scheduler.get_job("toxicity").modify(next_run_time=_utcnow())
        for _ in range(200):  # first run + 2 retries, 0.05 s then 0.1 s apart
            await asyncio.sleep(0.05)
            if count(db, "SELECT COUNT(*) FROM job_runs WHERE job = 'toxicity'") >= 3:
                break
        await asyncio.sleep(0.3)  # a fourth run would come here if retries did not stop
        assert count(db, "SELECT COUNT(*) FROM job_runs WHERE job = 'toxicity'") == 3
        assert load_state_of(db, "toxicity").failures == 3
        assert "ToxicityError" in (load_state_of(db, "toxicity").last_error or "")
        assert scheduler.get_job("toxicity:retry") is None
    finally:
        scheduler.shutdown(wait=False)
        memory.db.close()


def _utcnow() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


async def test_a_run_missed_while_down_is_caught_up_once(db: Path) -> None:
    import time

    populate(db, 10, start=NOW - 2 * DAY, end=NOW - DAY)
    memory = open_memory(db, SECRET)
    settings = make_settings(db)
    with audit_connection(db) as adb, adb.write() as conn:
        conn.execute(
            "INSERT INTO job_state (job, last_success_at, failures) VALUES ('retention', ?, 0)",
            [time.time() - 3 * DAY],  # daily job, last ran three days ago
        )
    scheduler = build_scheduler(None, memory, settings)
    runner = scheduler.solace_runner
    assert await runner.catch_up() == ["retention"]  # once, not three times
    assert count(db, "SELECT COUNT(*) FROM job_runs WHERE job = 'retention'") == 1
    assert await runner.catch_up() == []
    memory.db.close()


async def test_jobs_disabled_and_serve_integration(db: Path) -> None:
    from bot.serve import _start_jobs

    memory = open_memory(db, SECRET)
    off = make_settings(db, enabled=False)
    assert build_scheduler(None, memory, off).get_jobs() == []
    engine = build_engine(make_settings(db), memory=memory)
    scheduler = _start_jobs(engine, make_settings(db))
    try:
        assert scheduler.running and scheduler.get_job("retention") is not None
    finally:
        scheduler.shutdown(wait=False)
    assert _start_jobs(engine, off) is None
    memory.db.close()


# --- CLI -------------------------------------------------------------------------------------


def test_audit_cli_run_status_and_errors(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli import cli

    populate(db, 15, start=NOW - 2 * DAY, end=NOW - DAY)
    monkeypatch.setenv("SOLACE_MEMORY__DB_PATH", str(db))
    monkeypatch.delenv("SOLACE_CONFIG", raising=False)
    runner = CliRunner()
    result = runner.invoke(cli, ["audit", "run", "log-conversations"])
    assert result.exit_code == 0, result.output
    assert re.search(r"log-conversations: \d+ items, \d+ skipped", result.output)
    status = runner.invoke(cli, ["audit", "status"])
    assert status.exit_code == 0 and "log-conversations: last success 20" in status.output
    missing = runner.invoke(cli, ["audit", "run", "toxicity", "--db", str(db.parent / "no.db")])
    assert missing.exit_code != 0 and "no such database" in missing.output
    bad = runner.invoke(cli, ["audit", "report", "--since", "soon"])
    assert bad.exit_code != 0 and "use a number and a unit" in bad.output
    unknown = runner.invoke(cli, ["audit", "run", "dance"])
    assert unknown.exit_code != 0
    for args in (["audit"], ["audit", "run"], ["audit", "report"], ["audit", "status"]):
        helped = runner.invoke(cli, [*args, "--help"])
        assert helped.exit_code == 0 and len(helped.output.splitlines()) > 3


def test_a_job_releases_the_write_lock_and_pauses_after_each_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chat's write must find the lock free between a job's batches (bench_audit measures
    the latency): the pause comes after COMMIT and keeps the job's share of the lock <= 25%."""
    import sqlite3

    from bot.audit import store as audit

    db = tmp_path / "bot.db"
    populate(db, 2, start=0.0, end=10.0)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        chat = sqlite3.connect(str(db), timeout=0, isolation_level=None)
        chat.execute("BEGIN IMMEDIATE")  # raises "database is locked" if the job still held it
        chat.execute("ROLLBACK")
        chat.close()
        pauses.append(seconds)

    monkeypatch.setattr(audit.time, "sleep", pause)
    with audit_connection(db) as adb:
        with adb.write() as conn:
            conn.execute("SELECT 1")
        with pytest.raises(RuntimeError), adb.write():
            raise RuntimeError("a failed batch rolls back and does not pause")
    assert len(pauses) == 1 and pauses[0] >= audit.MIN_WRITE_PAUSE_SECONDS
    audit.yield_after_write(0.03)
    assert pauses[-1] == pytest.approx(0.09)  # held 30 ms: pause 90 ms, a 25% duty cycle


def test_the_snapshot_rechecks_a_turn_by_index_not_by_listing_every_crisis(db: Path) -> None:
    """The per-turn check inside the snapshot's write transaction looks the turn's own
    conversation up in the (kind, conversation_id) index. As `IN (SELECT … every crisis
    event)` it rebuilt the list of all crisis conversations for each copied turn, holding the
    write lock the chats need (10,000 crisis conversations: over 30 minutes, issue 21)."""
    from bot.audit.log_conversations import STILL_REVIEWABLE

    populate(db, 20, start=NOW - DAY, end=NOW, crisis_share=1.0)
    with audit_connection(db) as adb:
        plan = [r[3] for r in adb.query(f"EXPLAIN QUERY PLAN {STILL_REVIEWABLE}", [1, NOW])]
        crisis_turn = adb.query(
            "SELECT id, created_at FROM turns WHERE conversation_id IN (SELECT "
            "conversation_id FROM events WHERE kind = 'crisis') LIMIT 1"
        )[0]
        assert adb.query(STILL_REVIEWABLE, list(crisis_turn))  # still finds crisis turns
    assert not any(step.startswith("LIST SUBQUERY") for step in plan), plan
    assert any("kind=? AND conversation_id=?" in step for step in plan), plan
