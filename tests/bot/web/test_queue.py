"""The moderation queue (bot/web/queue.py, moderation_routes.py) over a real SQLite file through
Starlette's test client: most serious first, states, notes, hand-over, escalation, reopening,
overdue highlights, labels and their export as safety cases, /forget, retention, and the daily
report's links into the console."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from starlette.testclient import TestClient

from bot.audit.store import audit_connection
from bot.memory import open_memory
from bot.web.app import build_app
from bot.web.store import connection
from tests.bot.audit.audit_data import SECRET
from tests.bot.web.helpers import (
    Console,
    client,
    consented_crisis,
    csrf_of,
    web_cli,
)

CONVERSATION_RE = re.compile(r'href="/conversations/([0-9a-f]{32})"')


def test_queue_is_most_serious_first_with_counts(app: Any, console: Console) -> None:
    c = client(app, "mo")
    page = c.get("/queue?show=all")
    ids = CONVERSATION_RE.findall(page.text)
    assert ids
    crisis = console.population.crisis_conversations
    first_other = next((i for i, cid in enumerate(ids) if cid not in crisis), len(ids))
    assert all(cid in crisis for cid in ids[:first_other])  # every crisis before the rest
    assert set(ids[:first_other]) == crisis & set(ids)
    assert re.search(rf"<b>{len(ids)}</b>all", page.text)


def test_queue_actions_states_notes_handover_and_escalation(app: Any, console: Console) -> None:
    cid = sorted(console.population.crisis_conversations)[0]
    mo, mx, ada = client(app, "mo"), client(app, "max"), client(app, "ada")

    def act(who: TestClient, action: str, **extra: str) -> str:
        token = csrf_of(who.get(f"/conversations/{cid}").text)
        r = who.post(f"/conversations/{cid}/action",
                     data={"csrf_token": token, "action": action, **extra})  # fmt: skip
        assert r.status_code == 200
        return re.search(r'class="flash"[^>]*>([^<]*)', r.text).group(1)  # type: ignore[union-attr]

    assert act(mo, "claim") == "Claimed."
    assert act(mx, "claim") == "Not done: already claimed by mo."
    with connection(console.db) as conn:
        max_id = conn.execute("SELECT id FROM web_accounts WHERE name = 'max'").fetchone()[0]
    assert act(mo, "handover", to_account=str(max_id), note="over to you") == "Handed over."
    assert act(mx, "note", note="called the <b>team</b>") == "Note added."
    assert act(mx, "escalate", note="") == "Not done: say why you escalate (the admin reads it)."
    assert act(mx, "escalate", note="needs a second opinion") == "Escalated to an admin."
    assert "<b>1</b>escalated" in ada.get("/queue").text
    page = ada.get(f"/conversations/{cid}").text
    assert "called the &lt;b&gt;team&lt;/b&gt;" in page and "needs a second opinion" in page
    assert act(ada, "resolve", note="handled") == "Escalation resolved."
    with connection(console.db) as conn:
        state = conn.execute("SELECT state, claimed_by FROM web_queue WHERE conversation_id = ?",
                             [cid]).fetchone()  # fmt: skip
        assert tuple(state) == ("reviewed", max_id)
        kinds = [r[0] for r in conn.execute("SELECT kind FROM web_notes ORDER BY id")]
    assert kinds == ["handover", "note", "escalation", "resolved"]
    assert cid not in CONVERSATION_RE.findall(mo.get("/queue").text)  # reviewed: not open


def test_a_reviewed_conversation_flagged_again_reopens(app: Any, console: Console) -> None:
    cid = sorted(console.population.crisis_conversations)[0]
    c = client(app, "mo")
    token = csrf_of(c.get(f"/conversations/{cid}").text)
    c.post(f"/conversations/{cid}/action", data={"csrf_token": token, "action": "review"})
    assert cid not in CONVERSATION_RE.findall(c.get("/queue").text)
    with connection(console.db) as conn:
        key = conn.execute("SELECT user_key FROM events WHERE conversation_id = ?",
                           [cid]).fetchone()[0]  # fmt: skip
        conn.execute("INSERT INTO events (user_key, conversation_id, kind, category, created_at)"
                     " VALUES (?, ?, 'guard', 'method', ?)", [key, cid, time.time() + 5])  # fmt: skip
    app.state.web.clock = lambda: time.time() + 10
    assert cid in CONVERSATION_RE.findall(c.get("/queue").text)
    assert "flagged again" in c.get(f"/conversations/{cid}").text


def test_overdue_conversations_are_highlighted(console: Console) -> None:
    quick = console.settings.model_copy(update={"web": console.settings.web.model_copy(
        update={"overdue_hours": 0.001})})  # fmt: skip
    c = client(build_app(quick, console.db), "mo")
    page = c.get("/queue").text
    assert 'class="item overdue' in page and 'class="count warn' in page
    slow = client(build_app(console.settings.model_copy(update={"web": console.settings.web
        .model_copy(update={"overdue_hours": 24 * 365})}), console.db), "mo")  # fmt: skip
    assert 'class="item overdue' not in slow.get("/queue").text


def test_labels_and_their_export_as_safety_cases(
    app: Any, console: Console, tmp_path: Path
) -> None:
    cid, plain, flagged = consented_crisis(console)
    c = client(app, "mo")
    token = csrf_of(c.get(f"/conversations/{cid}").text)

    def label(turn: int, decision: str, **extra: str) -> str:
        r = c.post(f"/conversations/{cid}/label",
                   data={"csrf_token": token, "turn_id": str(turn), "decision": decision, **extra})  # fmt: skip
        return re.search(r'class="flash"[^>]*>([^<]*)', r.text).group(1)  # type: ignore[union-attr]

    assert label(plain, "false_alarm").startswith("Not labelled: false alarm is for a flagged")
    assert label(plain, "missed").startswith("Not labelled: name the crisis category")
    assert label(plain, "missed", category="self_harm", style="indirect") == \
        "Labelled: crisis (self_harm), style indirect."  # fmt: skip
    assert label(flagged, "false_alarm") == "Labelled: not a crisis, style distress."
    assert label(flagged, "correct").startswith("Labelled: crisis (")  # the latest label wins
    exported = c.get("/labels/export.jsonl")
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    cases = [json.loads(line) for line in exported.text.splitlines()]
    assert {(x["decision"], x["level"]) for x in cases} == {("missed", "crisis"),
                                                            ("correct", "crisis")}  # fmt: skip
    # The file is a case file `solace safety evaluate` reads and scores.
    out = tmp_path / "labels.jsonl"
    cli = CliRunner().invoke(web_cli(), ["export-cases", "--out", str(out), "--db",
                                          str(console.db)])  # fmt: skip
    assert cli.exit_code == 0 and "2 cases (1 missed crises)" in cli.output
    assert out.stat().st_mode & 0o777 == 0o600
    from bot.safety.cli import safety

    evaluated = CliRunner().invoke(safety, ["evaluate", str(out)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "| all | 1.00 (1/1)" in evaluated.output and "0.50 (1/2)" in evaluated.output  # recall


def test_labels_of_people_without_consent_are_not_exported(app: Any, console: Console) -> None:
    with audit_connection(console.db) as adb:
        row = adb.query(
            "SELECT t.conversation_id, t.turn_id FROM audit_turns t JOIN users u ON "
            "u.user_key = t.user_key WHERE t.role = 'user' AND t.flagged = 1 AND "
            "u.review_consent_at IS NULL LIMIT 1"
        )[0]
    c = client(app, "mo")
    page = c.get(f"/conversations/{row[0]}").text
    assert "labels are kept but not exported" in page
    c.post(f"/conversations/{row[0]}/label", data={"csrf_token": csrf_of(page),
           "turn_id": str(row[1]), "decision": "correct"})  # fmt: skip
    assert c.get("/labels/export.jsonl").text == ""


def test_forget_erases_queue_state_notes_and_labels(app: Any, console: Console) -> None:
    cid, plain, _ = consented_crisis(console)
    c = client(app, "mo")
    token = csrf_of(c.get(f"/conversations/{cid}").text)
    c.post(f"/conversations/{cid}/action", data={"csrf_token": token, "action": "claim"})
    c.post(f"/conversations/{cid}/action", data={"csrf_token": token, "action": "note",
                                                 "note": "a private remark"})  # fmt: skip
    c.post(f"/conversations/{cid}/label", data={"csrf_token": token, "turn_id": str(plain),
           "decision": "missed", "category": "suicide"})  # fmt: skip
    with connection(console.db) as conn:
        key = conn.execute("SELECT user_key FROM web_queue WHERE conversation_id = ?",
                           [cid]).fetchone()[0]  # fmt: skip
        before = {t: conn.execute(f"SELECT COUNT(*) FROM {t} WHERE user_key = ?", [key])
                  .fetchone()[0] for t in ("web_queue", "web_notes", "web_labels")}  # fmt: skip
    assert before == {"web_queue": 1, "web_notes": 1, "web_labels": 1}
    store = open_memory(console.db, SECRET)
    erasure = store.forget_user(key)
    store.db.close()
    deleted = erasure.deleted
    assert deleted["web_queue"] == 1 and deleted["web_notes"] == 1 and deleted["web_labels"] == 1
    assert erasure.wal_clean
    with connection(console.db) as conn:
        for table in ("web_queue", "web_notes", "web_labels"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table} WHERE user_key = ?",
                                [key]).fetchone()[0] == 0  # fmt: skip
    assert b"a private remark" not in console.db.read_bytes()  # secure_delete + checkpoint
    assert c.get(f"/conversations/{cid}").status_code == 404


def test_web_tables_with_bot_user_rows_have_a_user_key(tmp_path: Path) -> None:
    """Tables about a bot user carry `user_key` (so /forget finds them); the others hold staff
    accounts, raters' own chats or data-set dialogues, never a bot user's data."""
    from bot.web.store import migrate_web

    db = tmp_path / "t.db"
    migrate_web(db)
    staff_or_study = {"web_keys", "web_accounts", "web_logins", "web_login_attempts",
                      "web_audit", "web_studies", "web_eval_sessions", "web_eval_turns",
                      "web_eval_answers", "web_rating_items", "web_ratings"}  # fmt: skip
    with connection(db) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'web_%'")}  # fmt: skip
        with_key = {t for t in tables if "user_key" in
                    {c[1] for c in conn.execute(f"PRAGMA table_info({t})")}}  # fmt: skip
    assert with_key == {"web_queue", "web_notes", "web_labels"}
    assert tables == with_key | staff_or_study


def test_the_daily_report_links_into_the_console(console: Console) -> None:
    from bot.audit.report.build import collect_report
    from bot.audit.report.render import render_html

    linked = console.settings.model_copy(update={"web": console.settings.web.model_copy(
        update={"public_url": "https://mod.example.org/"})})  # fmt: skip
    now = time.time()
    with audit_connection(console.db) as adb:
        data = collect_report(adb, linked, now - 86_400 * 8, now + 1, "weekly")
        plain = collect_report(adb, console.settings, now - 86_400 * 8, now + 1, "weekly")
    first = data["flagged"][0]
    cid = next(c for c in console.population.conversations if c.startswith(first["conversation"]))
    assert first["console_url"] == f"https://mod.example.org/conversations/{cid}"
    assert f'href="https://mod.example.org/conversations/{cid}"' in render_html(data)
    assert plain["flagged"][0]["console_url"] is None
    assert "open in the console" not in render_html(plain)


def test_retention_purges_old_queue_rows_notes_labels_and_access_log(
    app: Any, console: Console
) -> None:
    from bot.audit.retention import purge_expired

    cid, plain, _ = consented_crisis(console)
    c = client(app, "mo")
    token = csrf_of(c.get(f"/conversations/{cid}").text)
    c.post(f"/conversations/{cid}/action", data={"csrf_token": token, "action": "note",
                                                 "note": "old remark"})  # fmt: skip
    c.post(f"/conversations/{cid}/label", data={"csrf_token": token, "turn_id": str(plain),
           "decision": "missed", "category": "abuse"})  # fmt: skip
    tables = ("web_queue", "web_notes", "web_labels", "web_audit")
    with audit_connection(console.db) as adb:
        purge_expired(adb, console.settings, time.time())  # nothing is old yet
        assert all(adb.scalar(f"SELECT COUNT(*) FROM {t}") for t in tables)
        later = time.time() + (console.settings.memory.retention_days + 1) * 86_400
        result = purge_expired(adb, console.settings, later)
        assert all(adb.scalar(f"SELECT COUNT(*) FROM {t}") == 0 for t in tables)
    assert result.detail["web_notes"] == 1 and result.detail["web_labels"] == 1


def test_rotating_the_pseudonym_secret_rekeys_the_consoles_rows(app: Any, console: Console) -> None:
    """`solace memory rotate-secret` re-keys every `user_key` column, the console's included,
    so /forget after a rotation still finds the queue row, notes and labels about the person."""
    import sqlite3

    from bot.memory.keys import rekey, rotate_secret

    cid, plain, _ = consented_crisis(console)
    c = client(app, "mo")
    token = csrf_of(c.get(f"/conversations/{cid}").text)
    c.post(f"/conversations/{cid}/action", data={"csrf_token": token, "action": "note",
                                                 "note": "a remark"})  # fmt: skip
    c.post(f"/conversations/{cid}/label", data={"csrf_token": token, "turn_id": str(plain),
           "decision": "missed", "category": "suicide"})  # fmt: skip
    tables = ("web_queue", "web_notes", "web_labels")
    with connection(console.db) as conn:
        old_key = conn.execute("SELECT user_key FROM web_queue WHERE conversation_id = ?",
                               [cid]).fetchone()[0]  # fmt: skip
    new_secret = b"a-new-pseudonym-secret-0123456789abcdef"
    raw = sqlite3.connect(console.db, isolation_level=None)
    try:
        changed = rotate_secret(raw, SECRET, new_secret)
    finally:
        raw.close()
    assert all(changed[t] >= 1 for t in tables)
    new_key = rekey(new_secret, old_key)
    with connection(console.db) as conn:
        for table in tables:
            keys = {r[0] for r in conn.execute(f"SELECT user_key FROM {table}")}
            assert old_key not in keys and new_key in keys, table
    store = open_memory(console.db, new_secret)
    erasure = store.forget_user(new_key)
    store.db.close()
    assert all(erasure.deleted[t] == 1 for t in tables)
