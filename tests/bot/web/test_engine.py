"""The console over conversations the real engine wrote, and its migration order.

People talk to the real engine (echo backend, the real safety screen); the real snapshot job
copies what moderators may read. A moderator sees text only where the report may show it
(review consent from before the message, or a crisis flag), redacted; a person's private chat
and each group (issue 15's chat scopes) are separate queue items, labelled by kind, and one
conversation's text or events never appear on another's page.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from bot import texts
from bot.audit.log_conversations import log_conversations
from bot.audit.store import audit_connection
from bot.engine import build_engine
from bot.memory import open_memory
from bot.messages import IncomingMessage
from bot.web.app import build_app
from bot.web.auth import add_account
from bot.web.store import connection, migrate_web
from tests.bot.audit.audit_data import EMAIL, SECRET
from tests.bot.web.helpers import PASSWORD, console_settings, csrf_of, login
from tests.fakes import command_text

PERSON = "4242"
GROUP = "-1001234567890"
PRIVATE_WORDS = "ZEBRA my diagnosis came back and I feel so much shame"
GROUP_WORDS = "GIRAFFE hi everyone"
GROUP_CRISIS = "I want to kill myself tonight"
PRIVATE_CRISIS = "OKAPI I have decided to end my life"
CONVERSATION_RE = re.compile(r'href="/conversations/([0-9a-f]{32})"')


async def say(engine: Any, text: str, chat: str | None = None, person: str = PERSON) -> str:
    msg = IncomingMessage("telegram", person, text, None, chat)
    async with contextlib.aclosing(engine.respond(msg)) as stream:
        return "".join([piece async for piece in stream])


def snapshot_and_open(db: Path, settings: Any) -> TestClient:
    with audit_connection(db) as adb:
        log_conversations(adb, settings, time.time())
    migrate_web(db)
    with connection(db) as conn, contextlib.suppress(ValueError):  # 2nd call: it exists
        add_account(conn, "mo", "moderator", PASSWORD, time.time())
    client = TestClient(build_app(settings, db), base_url="http://127.0.0.1")
    assert login(client, "mo").status_code == 303
    return client


async def test_private_and_group_conversations_are_separate_queue_items(tmp_path: Path) -> None:
    db = tmp_path / "solace.db"
    settings = console_settings(db)
    memory = open_memory(db, SECRET)
    engine = build_engine(settings, memory=memory)
    try:
        await say(engine, PRIVATE_WORDS)
        await engine.set_review("telegram", PERSON, "on")  # consent covers every chat
        await say(engine, GROUP_WORDS, GROUP)
        await say(engine, GROUP_CRISIS, GROUP)
        key = memory.pseudonym("telegram", PERSON)
        private = memory.conversation_id(key, "telegram")
        group = memory.conversation_id(key, "telegram", memory.scope_key("telegram", PERSON, GROUP))
        assert private != group

        moderator = snapshot_and_open(db, settings)
        queue = moderator.get("/queue?show=all").text
        assert CONVERSATION_RE.findall(queue) == [group]  # the private chat has no flag
        assert "telegram, group chat" in queue
        page = moderator.get(f"/conversations/{group}").text
        assert "Telegram, group chat" in page and "GIRAFFE" in page and "kill myself" in page
        assert "ZEBRA" not in page  # the private chat's words never show on the group's page
        assert moderator.get(f"/conversations/{private}").status_code == 404  # not flagged

        await say(engine, PRIVATE_CRISIS)  # now a crisis in the private chat too
        moderator = snapshot_and_open(db, settings)
        queue = moderator.get("/queue?show=all").text
        assert sorted(CONVERSATION_RE.findall(queue)) == sorted([private, group])
        assert "telegram, private chat" in queue and "telegram, group chat" in queue
        private_page = moderator.get(f"/conversations/{private}").text
        group_page = moderator.get(f"/conversations/{group}").text
        assert "ZEBRA" in private_page and "OKAPI" in private_page
        assert "GIRAFFE" not in private_page and "kill myself" not in private_page
        assert "OKAPI" not in group_page and "ZEBRA" not in group_page
        with connection(db) as conn:  # each page's events are its own conversation's
            events = conn.execute(
                "SELECT conversation_id, COUNT(*) FROM events WHERE kind = 'crisis' "
                "GROUP BY conversation_id"
            ).fetchall()
        assert dict(events) == {private: 1, group: 1}
        for cid, page_html in ((private, private_page), (group, group_page)):
            assert page_html.count("<td>crisis</td>") == 1, cid
        assert GROUP not in queue + private_page + group_page  # the group's id is never kept
    finally:
        memory.db.close()


async def test_moderators_read_only_what_the_report_may_show_redacted(tmp_path: Path) -> None:
    db = tmp_path / "solace.db"
    settings = console_settings(db)
    memory = open_memory(db, SECRET)
    engine = build_engine(settings, memory=memory)
    shy, open_ = "5001", "5002"
    try:
        await say(engine, "PANGOLIN years ago I used to cut myself", person=shy)  # concern
        await engine.set_review("telegram", open_, "on")
        await say(engine, f"years ago I used to cut myself. Mail me at {EMAIL} or call "
                  "+1 415 555 0134", person=open_)  # fmt: skip
        await engine.set_review("telegram", shy, "on")  # after the message: it stays unseen
        cid = {p: memory.conversation_id(memory.pseudonym("telegram", p), "telegram")
               for p in (shy, open_)}  # fmt: skip

        moderator = snapshot_and_open(db, settings)
        queue = moderator.get("/queue?show=all").text
        assert sorted(CONVERSATION_RE.findall(queue)) == sorted(cid.values())
        assert queue.count("concern-level screen: self_harm") == 2
        assert "no excerpt (no consent, no crisis)" in queue
        unseen = moderator.get(f"/conversations/{cid[shy]}").text
        assert "No excerpt" in unseen and "PANGOLIN" not in unseen and "cut myself" not in unseen
        assert "concern" in unseen  # its events are listed, without text
        seen = moderator.get(f"/conversations/{cid[open_]}").text
        assert "used to cut myself" in seen and "[email]" in seen
        assert EMAIL not in seen and "555 0134" not in seen
    finally:
        memory.db.close()


async def test_forget_in_the_chat_erases_the_consoles_rows_of_every_chat(tmp_path: Path) -> None:
    """The person's /forget (through the engine, as the adapters call it) takes the queue
    state, moderators' notes and labels of their private and group conversations with it."""
    db = tmp_path / "solace.db"
    settings = console_settings(db)
    memory = open_memory(db, SECRET)
    engine = build_engine(settings, memory=memory)
    try:
        await engine.set_review("telegram", PERSON, "on")
        await say(engine, PRIVATE_CRISIS)
        await say(engine, GROUP_CRISIS, GROUP)
        moderator = snapshot_and_open(db, settings)
        cids = CONVERSATION_RE.findall(moderator.get("/queue?show=all").text)
        assert len(cids) == 2
        for cid in cids:
            page = moderator.get(f"/conversations/{cid}").text
            token = csrf_of(page)
            turn = re.search(r'name="turn_id" value="(\d+)"', page)
            assert turn is not None
            for data in ({"action": "claim"}, {"action": "note", "note": f"WOMBAT note {cid}"}):
                moderator.post(f"/conversations/{cid}/action", data={"csrf_token": token, **data})
            moderator.post(f"/conversations/{cid}/label", data={
                "csrf_token": token, "turn_id": turn.group(1), "decision": "correct"})  # fmt: skip
        tables = ("web_queue", "web_notes", "web_labels")
        with connection(db) as conn:
            assert [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables] == [
                2, 2, 2]  # fmt: skip

        reply = await command_text(engine, "/forget yes", platform="telegram", user_id=PERSON)
        assert reply == texts.FORGET_DONE  # the command as a person types it
        with connection(db) as conn:
            assert [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables] == [
                0, 0, 0]  # fmt: skip
        assert b"WOMBAT" not in b"".join(
            p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists()
        )  # fmt: skip
        for cid in cids:
            assert moderator.get(f"/conversations/{cid}").status_code == 404
    finally:
        memory.db.close()


def test_console_migrations_come_after_the_memory_schema(tmp_path: Path) -> None:
    """`solace-web` is applied after every `solace` migration (the newest included), on a new file
    and on one that had the console's set before the newest memory migration existed."""
    from bot.memory.schema import migrations
    from bot.web.store import web_migrations

    def applied(path: Path) -> list[tuple[str, str]]:
        with sqlite3.connect(path) as conn:
            return [
                (r[0], r[1])
                for r in conn.execute(
                    "SELECT migration_set, name FROM _sqlite_migrations ORDER BY applied_at, rowid"
                )
            ]

    memory_names = [m.name for m in migrations.pending(_empty_db(tmp_path / "names.db"))]
    assert memory_names[:3] == [
        "m001_initial",
        "m002_audits",
        "m003_chat_scopes_and_key_check",
    ]
    fresh = tmp_path / "fresh.db"
    migrate_web(fresh)
    order = applied(fresh)
    assert [n for _, n in order] == [*memory_names, "w001_console"]
    assert [s for s, _ in order] == ["solace"] * len(memory_names) + ["solace-web"]

    older = tmp_path / "older.db"  # the older memory set and the console's w001
    db = _empty_db(older)
    migrations.apply(db, stop_before=memory_names[-1])
    web_migrations.apply(db)
    db.close()
    migrate_web(older)
    assert [n for _, n in applied(older)][-1] == memory_names[-1]  # added later: works
    with sqlite3.connect(older) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"chat_scopes", "secret_check", "web_queue"} <= tables


def _empty_db(path: Path) -> Any:
    from sqlite_utils import Database

    return Database(path)
