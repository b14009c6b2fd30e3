"""Private and group conversations never mix (issue 15, item 1).

Memory used to be keyed per person only, so a reply in a Telegram group or a Discord server was
built from that person's private history. Here: the engine with a real SQLite file, then the
real python-telegram-bot and discord.py clients against the loopback servers, with a backend
that records every prompt it is given.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from bot.audit.log_conversations import log_conversations
from bot.audit.store import audit_connection
from bot.engine import Engine
from bot.memory.schema import user_tables
from bot.messages import IncomingMessage
from tests.bot.adapters.helpers import eventually
from tests.fakes import FakeSafety, RecordingEchoBackend, command_text
from tests.servers.discord import GUILD_CHANNEL_ID
from tests.servers.rigs import discord_rig, telegram_rig

pytestmark = pytest.mark.timeout(120)

PERSON = "4242"
GROUP_A, GROUP_B = "-1001234567890", "-1009876543210"
PRIVATE_WORDS = "ZEBRA my diagnosis came back and I feel so much shame"
GROUP_A_WORDS = "hi everyone, how is your day GIRAFFE"
GROUP_B_WORDS = "hello other group OKAPI"


@pytest.fixture
def backend() -> RecordingEchoBackend:
    return RecordingEchoBackend(n_ctx=2048)


@pytest.fixture
def engine(backend, memory, settings) -> Engine:
    """The real engine over a recording echo backend and a real SQLite file."""
    return Engine(backend, memory, FakeSafety(), settings)


async def say(engine: Engine, text: str, chat: str | None = None, user: str = PERSON) -> str:
    msg = IncomingMessage("telegram", user, text, None, chat)
    async with contextlib.aclosing(engine.respond(msg)) as stream:
        return "".join([piece async for piece in stream])


def file_bytes(path: Path) -> bytes:
    parts = (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal"))
    return b"".join(p.read_bytes() for p in parts if p.exists())


async def test_a_group_reply_never_sees_the_private_chat_nor_another_group(
    engine: Engine, backend: RecordingEchoBackend
) -> None:
    await say(engine, PRIVATE_WORDS)
    await say(engine, GROUP_A_WORDS, GROUP_A)
    await say(engine, "and in private again")
    await say(engine, GROUP_B_WORDS, GROUP_B)
    await say(engine, "back in the first group", GROUP_A)
    private_1, group_a_1, private_2, group_b, group_a_2 = (backend.prompt_text(i) for i in range(5))
    assert "ZEBRA" in private_1
    assert "ZEBRA" not in group_a_1  # the defect: a DM about a diagnosis in a group reply
    assert "ZEBRA" in private_2 and "GIRAFFE" not in private_2  # a DM never sees the group
    assert "ZEBRA" not in group_b and "GIRAFFE" not in group_b  # groups never see each other
    assert "GIRAFFE" in group_a_2 and "ZEBRA" not in group_a_2 and "OKAPI" not in group_a_2


async def test_export_and_forget_cover_every_chat(engine: Engine, tmp_path: Path) -> None:
    await say(engine, PRIVATE_WORDS)
    await say(engine, GROUP_A_WORDS, GROUP_A)
    await say(engine, GROUP_B_WORDS, GROUP_B)
    exported = await engine.export("telegram", PERSON)
    chats = sorted(c["chat"] for c in exported["conversations"])
    assert chats == ["group", "group", "private"]
    assert all(c["current"] for c in exported["conversations"])
    words = [t["text"] for c in exported["conversations"] for t in c["turns"]]
    assert {PRIVATE_WORDS, GROUP_A_WORDS, GROUP_B_WORDS} <= set(words)
    assert GROUP_A not in str(exported) and GROUP_B not in str(exported)

    assert "erased" in await command_text(
        engine, "/forget yes", platform="telegram", user_id=PERSON
    )
    key = engine.memory.pseudonym("telegram", PERSON)
    conn = engine.memory.db.conn
    assert "chat_scopes" in user_tables(conn)
    for table in user_tables(conn):
        rows = conn.execute(f"SELECT COUNT(*) FROM [{table}] WHERE user_key = ?", [key])
        assert rows.fetchone()[0] == 0, table
    data = file_bytes(tmp_path / "memory.db")
    for marker in (b"ZEBRA", b"GIRAFFE", b"OKAPI", key.encode()):
        assert marker not in data, marker


async def test_reset_in_private_starts_the_private_chat_afresh_only(
    engine: Engine, backend: RecordingEchoBackend
) -> None:
    await say(engine, PRIVATE_WORDS)
    await say(engine, GROUP_A_WORDS, GROUP_A)
    await command_text(engine, "/reset", platform="telegram", user_id=PERSON)
    await say(engine, "fresh start in private")
    await say(engine, "still in the group", GROUP_A)
    assert "ZEBRA" not in backend.prompt_text(2)
    assert "GIRAFFE" in backend.prompt_text(3)  # the group's conversation was not reset


async def test_group_ids_never_reach_the_file_and_scopes_are_per_person(
    engine: Engine, tmp_path: Path
) -> None:
    await say(engine, GROUP_A_WORDS, GROUP_A)
    await say(engine, "me too", GROUP_A, user="5151")
    engine.memory.checkpoint()
    data = file_bytes(tmp_path / "memory.db")
    assert b"GIRAFFE" in data  # the right file
    assert GROUP_A.encode() not in data and GROUP_A.lstrip("-").encode() not in data
    scopes = engine.memory.db.execute("SELECT user_key, scope_key FROM chat_scopes").fetchall()
    assert len(scopes) == 2 and scopes[0][1] != scopes[1][1]  # who shares a group is not visible


async def test_a_crisis_in_a_group_flags_that_conversation_not_the_private_one(
    engine: Engine, settings, tmp_path: Path
) -> None:
    await say(engine, PRIVATE_WORDS)
    await say(engine, "I just want to end it all", GROUP_A)
    key = engine.memory.pseudonym("telegram", PERSON)
    group_conversation = engine.memory.conversation_id(
        key, "telegram", engine.memory.scope_key("telegram", PERSON, GROUP_A)
    )
    events = engine.memory.db.execute(
        "SELECT conversation_id FROM events WHERE kind = 'crisis'"
    ).fetchall()
    assert [e[0] for e in events] == [group_conversation]
    with audit_connection(tmp_path / "memory.db") as adb:  # moderators see the crisis only
        log_conversations(adb, settings, time.time())
        copied = adb.query("SELECT conversation_id, text FROM audit_turns")
    assert copied and {row[0] for row in copied} == {group_conversation}
    assert not any("ZEBRA" in row[1] for row in copied)  # no consent: the DM is not copied


async def test_telegram_dm_then_group_then_dm(memory, tmp_path: Path) -> None:
    """The real PTB client: the group prompt holds no DM text, the DM prompt no group text."""
    db_path = tmp_path / "memory.db"
    backend = RecordingEchoBackend()
    group = {"chat_id": -100555, "chat_type": "supergroup", "mention": True}
    async with telegram_rig(memory, db_path, backend=backend) as rig:
        await rig.server.send_text(77, PRIVATE_WORDS)
        await rig.reply_ending(77, PRIVATE_WORDS)
        await rig.server.send_text(77, GROUP_A_WORDS, **group)
        await rig.reply_ending(-100555, GROUP_A_WORDS)
        await rig.server.send_text(77, "thanks for earlier")
        await rig.reply_ending(77, "thanks for earlier")
        await eventually(lambda: memory.stats()["turns"] == 6)
    assert len(backend.prompts) == 3
    assert "ZEBRA" in backend.prompt_text(0)
    assert "ZEBRA" not in backend.prompt_text(1) and "GIRAFFE" in backend.prompt_text(1)
    assert "ZEBRA" in backend.prompt_text(2) and "GIRAFFE" not in backend.prompt_text(2)
    assert "ZEBRA" not in " ".join(rig.replies(-100555))


async def test_discord_dm_then_server_channel_then_dm(memory, tmp_path: Path) -> None:
    """The real discord.py client: a DM and a guild channel keep separate conversations."""
    db_path = tmp_path / "memory.db"
    backend = RecordingEchoBackend()
    async with discord_rig(memory, db_path, backend=backend) as rig:
        rig.gateway.add_guild()
        rig.gateway.send(88, PRIVATE_WORDS)
        await rig.reply_ending(rig.gateway.dm_channel(88), PRIVATE_WORDS)
        rig.gateway.send(88, GROUP_A_WORDS, guild=True, mention=True)
        await rig.reply_ending(GUILD_CHANNEL_ID, GROUP_A_WORDS)
        rig.gateway.send(88, "thanks for earlier")
        await rig.reply_ending(rig.gateway.dm_channel(88), "thanks for earlier")
        await eventually(lambda: memory.stats()["turns"] == 6)
    assert len(backend.prompts) == 3
    assert "ZEBRA" not in backend.prompt_text(1) and "GIRAFFE" in backend.prompt_text(1)
    assert "ZEBRA" in backend.prompt_text(2) and "GIRAFFE" not in backend.prompt_text(2)
    with sqlite3.connect(db_path) as conn:
        kinds = [r[0] for r in conn.execute("SELECT scope FROM turns ORDER BY id")]
    assert kinds == ["private", "private", "group", "group", "private", "private"]
