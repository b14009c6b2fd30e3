"""Privacy, end to end through the real Engine, SafetyLayer and a real SQLite file (issue 5).

- platform ids never reach the file (keyed pseudonyms);
- /forget erases every row of the user in every per-user table, and the bytes are gone from the
  database file, its WAL and shared-memory files (checked by reading them);
- /export returns the user's own data as JSON, and nobody else's;
- retention purges old turns (bytes included) and keeps recent ones;
- nothing is stored before the consent notice has been shown;
- a whole conversation logged at DEBUG leaks no message text, reply text or secret.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import pytest

from bot.backends import EchoBackend
from bot.engine import Engine
from bot.memory import open_memory
from bot.messages import IncomingMessage
from bot.safety import SafetyLayer
from tests.fakes import command_text

SECRET = b"privacy-test-pseudonym-secret-0123456789"
ALICE_ID, BOB_ID = "tg-user-99887766", "tg-user-11223344"
ALICE_WORDS = [
    "QUOKKA-alpha my sister and I argued again",
    "QUOKKA-bravo I want to kill myself",  # crisis: flagged turns and a crisis event
    "QUOKKA-charlie a stranger said you should kill yourself and it hurts",  # guard event
    "QUOKKA-delta thanks for listening",
]
BOB_WORDS = ["PELICAN-echo work is stressful"]


class Clock:
    """A settable clock for deterministic timestamps."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(tmp_path: Path, settings, clock: Clock):
    memory = open_memory(tmp_path / "private.db", SECRET, clock=clock)
    yield Engine(
        EchoBackend(n_ctx=512), memory, SafetyLayer(settings.safety), settings, clock=clock
    )
    memory.db.close()


async def _say(engine: Engine, user_id: str, text: str) -> str:
    msg = IncomingMessage("telegram", user_id, text, language_code="en")
    answer = await command_text(engine, text, platform="telegram", user_id=user_id)
    if answer is not None:
        return answer
    async with contextlib.aclosing(engine.respond(msg)) as stream:
        return "".join([piece async for piece in stream])


async def _converse(engine: Engine) -> list[str]:
    replies = [await _say(engine, ALICE_ID, text) for text in ALICE_WORDS]
    replies += [await _say(engine, BOB_ID, text) for text in BOB_WORDS]
    return replies


def _file_bytes(db_path: Path) -> bytes:
    parts = [
        db_path,
        db_path.with_name(db_path.name + "-wal"),
        db_path.with_name(db_path.name + "-shm"),
    ]
    return b"".join(p.read_bytes() for p in parts if p.exists())


def _add_audit_table(engine: Engine) -> None:
    """A table another area might add later (judge scores, audits): it has a user_key column."""
    db = engine.memory.db
    db.execute("CREATE TABLE judge_scores (user_key TEXT, note TEXT, score REAL)")
    for key_of, note in ((ALICE_ID, "QUOKKA-foxtrot judged"), (BOB_ID, "PELICAN-golf judged")):
        key = engine.memory.pseudonym("telegram", key_of)
        db.execute("INSERT INTO judge_scores VALUES (?, ?, 0.5)", [key, note])
    db.conn.commit()


async def test_platform_ids_never_reach_the_file(engine: Engine, tmp_path: Path) -> None:
    await _converse(engine)
    engine.memory.checkpoint()
    data = _file_bytes(tmp_path / "private.db")
    assert b"QUOKKA-alpha" in data  # the test reads the right file
    assert ALICE_ID.encode() not in data and BOB_ID.encode() not in data
    assert engine.memory.pseudonym("telegram", ALICE_ID) != engine.memory.pseudonym(
        "discord", ALICE_ID
    )


async def test_forget_erases_every_row_and_the_bytes(engine: Engine, tmp_path: Path) -> None:
    await _converse(engine)
    _add_audit_table(engine)
    alice = engine.memory.pseudonym("telegram", ALICE_ID)
    kinds = {
        r["kind"]
        for r in engine.memory.db.query("SELECT kind FROM events WHERE user_key = ?", [alice])
    }
    assert {"crisis", "guard"} <= kinds  # events exist before /forget
    assert await _say(engine, ALICE_ID, "/forget yes")
    for table in engine.memory.db.table_names():
        columns = {c.name for c in engine.memory.db.table(table).columns}
        if "user_key" in columns:
            rows = engine.memory.db.execute(
                f"SELECT COUNT(*) FROM [{table}] WHERE user_key = ?", [alice]
            )
            assert rows.fetchone()[0] == 0, table
    engine.memory.db.close()
    data = _file_bytes(tmp_path / "private.db")
    assert b"PELICAN-echo" in data and b"PELICAN-golf" in data  # Bob's data is still readable
    for marker in (b"QUOKKA", alice.encode()):
        assert marker not in data, marker


async def test_export_gives_own_data_only(engine: Engine) -> None:
    await _converse(engine)
    exported = await engine.export("telegram", ALICE_ID)
    text = json.dumps(exported, ensure_ascii=False)
    for words in ALICE_WORDS:
        assert words in text
    assert "PELICAN" not in text and ALICE_ID not in text
    assert {e["kind"] for e in exported["events"]} >= {"crisis", "guard"}


async def test_retention_purges_old_turns_and_their_bytes(
    engine: Engine, clock: Clock, tmp_path: Path, settings
) -> None:
    days = settings.memory.retention_days
    await _say(engine, ALICE_ID, "QUOKKA-old something from long ago")
    clock.now += (days + 1) * 86_400
    await _say(engine, BOB_ID, "PELICAN-new something from today")
    purged = engine.memory.purge_older_than(days)
    assert purged >= 2
    texts = [r["text"] for r in engine.memory.db.query("SELECT text FROM turns")]
    assert any("PELICAN-new" in t for t in texts) and not any("QUOKKA" in t for t in texts)
    engine.memory.db.close()
    data = _file_bytes(tmp_path / "private.db")
    assert b"PELICAN-new" in data and b"QUOKKA-old" not in data


async def test_nothing_is_stored_before_the_notice_is_seen(engine: Engine) -> None:
    msg = IncomingMessage("telegram", ALICE_ID, "QUOKKA-first hello")
    async with contextlib.aclosing(engine.respond(msg)) as stream:
        first = await anext(stream)  # the adapter stops reading after the notice arrives
    assert "not a therapist" in first and "/forget" in first
    assert engine.memory.db.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 0
    reply = await _say(engine, ALICE_ID, "QUOKKA-second hello again")
    assert reply.startswith(engine.privacy_text())  # not seen yet, so shown again
    assert "not a therapist" not in await _say(engine, ALICE_ID, "and again")


def test_notice_says_what_the_issue_requires(engine: Engine) -> None:
    notice = engine.privacy_text()
    for needed in ("AI", "not a therapist", "emergency", "pseudonym", "days", "moderator",
                   "/forget", "/export", "/privacy"):  # fmt: skip
        assert needed in notice, needed
    assert str(engine.settings.memory.retention_days) in notice


async def test_debug_logs_hold_no_message_text_or_secret(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    replies = await _converse(engine)
    for command in ("/country GB", "/privacy", "/reset", "/forget", "/forget yes"):
        replies.append(await _say(engine, ALICE_ID, command))
    await engine.export("telegram", BOB_ID)
    assert caplog.records, "nothing was logged: the test would prove nothing"
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for marker in ("QUOKKA", "PELICAN", "kill", "stranger", ALICE_ID, BOB_ID, SECRET.decode()):
        assert marker not in logged, marker
    for reply in replies:  # replies echo the user, and the crisis reply is fixed text
        assert reply[:40] not in logged
