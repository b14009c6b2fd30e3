"""MemoryStore against real temporary SQLite files."""

from __future__ import annotations

import asyncio
import stat
import threading
from pathlib import Path

import pytest

from bot.errors import ConfigError, StorageError
from bot.memory import MemoryStore, migrations, open_memory, resolve_secret

SECRET = b"memory-test-secret-0123456789abcdef"


def raw_bytes(db_path: Path) -> bytes:
    """Every byte SQLite keeps for this database (main file, WAL, shared memory)."""
    data = b""
    for suffix in ("", "-wal", "-shm"):
        file = Path(str(db_path) + suffix)
        if file.exists():
            data += file.read_bytes()
    return data


def add(store: MemoryStore, key: str, text: str, role: str = "user") -> int:
    return store.add_turn(key, platform="console", role=role, text=text, tokens=len(text.split()))


def test_migrations_are_applied_once_and_recorded(tmp_path):
    path = tmp_path / "m.db"
    first = open_memory(path, SECRET)
    assert {"users", "turns", "events"} <= set(first.db.table_names())
    applied = [m.name for m in migrations.applied(first.db)]
    assert applied[0] == "m001_initial" and migrations.pending(first.db) == []
    first.db.close()
    again = open_memory(path, SECRET)
    assert [m.name for m in migrations.applied(again.db)] == applied
    assert migrations.pending(again.db) == []
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again.db.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_pseudonym_is_keyed_and_stable(memory, tmp_path):
    key = memory.pseudonym("telegram", "12345")
    assert key == memory.pseudonym("telegram", "12345")
    assert key != memory.pseudonym("discord", "12345")
    other = open_memory(tmp_path / "other.db", b"another-secret-0123456789abcdef")
    assert key != other.pseudonym("telegram", "12345")
    assert len(key) == 64
    add(memory, key, "hello")
    assert b"12345" not in raw_bytes(tmp_path / "memory.db")


def test_turns_round_trip_newest_limit_oldest_first(memory):
    key = memory.pseudonym("console", "ann")
    for i in range(6):
        add(memory, key, f"turn {i}", "user" if i % 2 == 0 else "assistant")
    recent = memory.recent_turns(key, 3)
    assert [t.text for t in recent] == ["turn 3", "turn 4", "turn 5"]
    assert memory.recent_turns(memory.pseudonym("console", "nobody"), 3) == []
    with pytest.raises(ValueError, match="role"):
        memory.add_turn(key, platform="console", role="system", text="x", tokens=1)


def test_new_conversation_keeps_history_for_export(memory):
    key = memory.pseudonym("console", "ann")
    add(memory, key, "old")
    memory.new_conversation(key, "console")
    add(memory, key, "new")
    assert [t.text for t in memory.recent_turns(key, 10)] == ["new"]
    export = memory.export_user(key)
    assert [[t["text"] for t in c["turns"]] for c in export["conversations"]] == [["old"], ["new"]]


def test_forget_user_removes_the_bytes_from_the_files(tmp_path):
    path = tmp_path / "forget.db"
    store = open_memory(path, SECRET)
    ann, bob = store.pseudonym("console", "ann"), store.pseudonym("console", "bob")
    marker = "my secret marker zebra-quokka-4471"
    for i in range(50):
        add(store, ann, f"{marker} number {i}")
    store.add_event(ann, "crisis", "suicide", "screen:v1")
    add(store, bob, "bob stays here")
    assert marker.encode() in raw_bytes(path)
    deleted = store.forget_user(ann).deleted
    assert deleted["turns"] == 50 and deleted["events"] == 1 and deleted["users"] == 1
    assert marker.encode() not in raw_bytes(path)
    assert ann.encode() not in raw_bytes(path)
    assert b"bob stays here" in raw_bytes(path)
    assert store.export_user(ann) == {
        "user": None,
        "conversations": [],
        "events": [],
        "risk_state": None,
    }


def test_forget_user_covers_tables_added_later(memory):
    key = memory.pseudonym("console", "ann")
    memory.db["access_notes"].insert({"user_key": key, "note": "x"})
    memory.db["access_notes"].insert({"user_key": "someone-else", "note": "y"})
    assert memory.forget_user(key).deleted["access_notes"] == 1
    assert memory.db["access_notes"].count == 1


def test_purge_older_than_uses_the_clock(tmp_path):
    now = [1_000_000.0]
    store = open_memory(tmp_path / "purge.db", SECRET, clock=lambda: now[0])
    old, recent = store.pseudonym("console", "old"), store.pseudonym("console", "new")
    add(store, old, "ancient")
    store.add_event(old, "guard", "blocked")
    now[0] += 40 * 86_400
    add(store, recent, "fresh")
    removed = store.purge_older_than(30)
    assert removed == 3  # old's turn, old's event, old's (now empty) user row
    assert store.stats() == {"users": 1, "turns": 1, "flagged_turns": 0}


async def test_concurrent_writers_from_tasks_and_threads(tmp_path):
    path = tmp_path / "busy.db"
    store = open_memory(path, SECRET)
    second = open_memory(path, SECRET)  # another connection, as a second process would have

    async def writer(user: str) -> None:
        key = store.pseudonym("console", user)
        for i in range(20):
            add(store, key, f"{user} {i}")
            await asyncio.sleep(0)

    def thread_writer() -> None:
        key = second.pseudonym("console", "thread")
        for i in range(40):
            add(second, key, f"thread {i}")

    thread = threading.Thread(target=thread_writer)
    thread.start()
    await asyncio.gather(*(writer(f"user{n}") for n in range(8)))
    thread.join()
    assert store.stats()["turns"] == 8 * 20 + 40
    key = store.pseudonym("console", "user3")
    assert [t.text for t in store.recent_turns(key, 100)] == [f"user3 {i}" for i in range(20)]


def test_unreadable_database_fails_clearly(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StorageError, match="junk.db"):
        open_memory(path, SECRET)
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    with pytest.raises(StorageError, match="file-not-dir"):
        open_memory(blocked / "solace.db", SECRET)


def test_secret_file_is_created_once_with_private_mode(tmp_path):
    db_path = tmp_path / "data" / "solace.db"
    first = resolve_secret(None, db_path, allow_file=True)
    secret_file = db_path.parent / "pseudonym.secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert resolve_secret(None, db_path, allow_file=True) == first
    assert resolve_secret("x" * 40, db_path, allow_file=False) == b"x" * 40
    with pytest.raises(ConfigError, match="SOLACE_PSEUDONYM_SECRET"):
        resolve_secret(None, db_path, allow_file=False)
    with pytest.raises(ConfigError, match="at least 16"):
        resolve_secret("short", db_path, allow_file=False)


def test_an_in_memory_store_forgets_on_its_one_connection():
    from sqlite_utils import Database

    store = MemoryStore(Database(memory=True), SECRET)
    key = store.pseudonym("console", "ann")
    add(store, key, "hello")
    timeout = store.db.execute("PRAGMA busy_timeout").fetchone()[0]
    erasure = store.forget_user(key)
    assert erasure.wal_clean and erasure.deleted["turns"] == 1
    assert store.export_user(key) == {
        "user": None,
        "conversations": [],
        "events": [],
        "risk_state": None,
    }
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == timeout
