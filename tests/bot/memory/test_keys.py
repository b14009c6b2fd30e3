"""The database pins its pseudonym secret; rotation re-keys everything (issue 15, item 6).

Before: restarting with another SOLACE_PSEUDONYM_SECRET started everyone over (the consent
notice again, /export empty) and "/forget yes" said "erased" while the old rows stayed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot import texts
from bot.cli import cli
from bot.engine import Engine
from bot.errors import ConfigError, StorageError
from bot.memory import open_memory
from bot.memory.keys import SECRET_MISMATCH
from bot.memory.schema import user_tables
from bot.messages import IncomingMessage
from tests.bot.memory.sqlite_peer import Peer
from tests.fakes import FakeSafety, RecordingEchoBackend, command_text

pytestmark = pytest.mark.timeout(120)
OLD = "old-secret-4f1c9a7e2b5d8c3f6a0e"
NEW = "new-secret-9e8d7c6b5a4f3e2d1c0b"
NEWER = "newer-secret-0a1b2c3d4e5f60718293"
GROUP = "-1001112223334"
PERSON = "31337"
DM_WORDS = "ZEBRA my private worry"
GROUP_WORDS = "GIRAFFE hello group"


@pytest.fixture
def runner(clean_env: pytest.MonkeyPatch) -> CliRunner:
    """In-process CLI runs with a clean SOLACE_* environment."""
    return CliRunner()


def engine_for(path: Path, secret: str, settings) -> tuple[Engine, RecordingEchoBackend]:
    backend = RecordingEchoBackend()
    memory = open_memory(path, secret.encode())
    return Engine(backend, memory, FakeSafety(), settings), backend


async def say(engine: Engine, text: str, chat: str | None = None) -> str:
    msg = IncomingMessage("telegram", PERSON, text, None, chat)
    async with contextlib.aclosing(engine.respond(msg)) as stream:
        return "".join([piece async for piece in stream])


async def populate(path: Path, secret: str, settings) -> str:
    """A person with a private and a group conversation and a country; returns their key."""
    engine, _ = engine_for(path, secret, settings)
    await say(engine, DM_WORDS)
    await say(engine, GROUP_WORDS, GROUP)
    await engine.set_country("telegram", PERSON, "GB")
    key = engine.memory.pseudonym("telegram", PERSON)
    engine.memory.db.close()
    return key


def raw_bytes(path: Path) -> bytes:
    parts = [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


def rotate(runner: CliRunner, path: Path, old: str, new: str) -> tuple[int, str]:
    env = {"SOLACE_OLD_PSEUDONYM_SECRET": old, "SOLACE_NEW_PSEUDONYM_SECRET": new}
    result = runner.invoke(cli, ["memory", "rotate-secret", "--db", str(path)], env=env)
    for secret in (old, new):
        assert secret not in result.output
    return result.exit_code, result.output


async def test_another_secret_is_refused_with_a_clear_error(tmp_path: Path, settings) -> None:
    path = tmp_path / "pinned.db"
    await populate(path, OLD, settings)
    with pytest.raises(ConfigError) as refused:
        open_memory(path, NEW.encode())
    message = str(refused.value)
    assert message == SECRET_MISMATCH and "rotate-secret" in message
    assert NEW not in message and OLD not in message
    data = raw_bytes(path)
    assert OLD.encode() not in data and b"ZEBRA" in data  # the secret itself is never stored


def test_every_entry_point_refuses_another_secret(
    tmp_path: Path, runner: CliRunner, settings
) -> None:
    import asyncio

    path = tmp_path / "solace.db"
    asyncio.run(populate(path, OLD, settings))
    env = {"SOLACE_PSEUDONYM_SECRET": NEW, "SOLACE_MEMORY__DB_PATH": str(path)}
    chat = runner.invoke(cli, ["chat", "--backend", "echo"], input="hello\n", env=env)
    serve_env = {**env, "SOLACE_TELEGRAM_TOKEN": "123456:" + "A" * 35}
    serve = runner.invoke(cli, ["serve", "--telegram", "--backend", "echo"], env=serve_env)
    audit = runner.invoke(cli, ["audit", "status"], env=env)
    for result in (chat, serve, audit):
        assert result.exit_code == 1, result.output
        assert "not the secret this database was written with" in result.output
        assert NEW not in result.output
    health = runner.invoke(cli, ["health"], env=env)
    assert health.exit_code == 1
    assert "FAIL pseudonym_secret: set, but not the secret" in health.output
    fine = runner.invoke(cli, ["health"], env={**env, "SOLACE_PSEUDONYM_SECRET": OLD})
    assert "ok   pseudonym_secret: set, matches" in fine.output
    with sqlite3.connect(path) as conn:  # nobody was started over
        assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 1


async def test_rotation_keeps_everything_reachable_under_the_new_secret(
    tmp_path: Path, runner: CliRunner, settings
) -> None:
    path = tmp_path / "rotate.db"
    old_key = await populate(path, OLD, settings)
    code, output = rotate(runner, path, OLD, NEW)
    assert code == 0, output
    assert "re-keyed 4 rows: turns" in output and "re-keyed 1 rows: chat_scopes" in output
    with pytest.raises(ConfigError):
        open_memory(path, OLD.encode())  # the old secret alone no longer opens it
    engine, backend = engine_for(path, NEW, settings)
    key = engine.memory.pseudonym("telegram", PERSON)
    assert key != old_key
    reply = await say(engine, "do you remember me")
    assert "not a therapist" not in reply  # no consent notice again: still known
    assert "ZEBRA" in backend.prompt_text(0) and "GIRAFFE" not in backend.prompt_text(0)
    await say(engine, "and the group?", GROUP)
    assert "GIRAFFE" in backend.prompt_text(1) and "ZEBRA" not in backend.prompt_text(1)
    exported = await engine.export("telegram", PERSON)
    assert exported["user"]["country"] == "GB"
    words = {t["text"] for c in exported["conversations"] for t in c["turns"]}
    assert {DM_WORDS, GROUP_WORDS} <= words
    assert (
        await command_text(engine, "/forget yes", platform="telegram", user_id=PERSON)
        == texts.FORGET_DONE
    )
    conn = engine.memory.db.conn
    for table in user_tables(conn):
        assert conn.execute(f"SELECT COUNT(*) FROM [{table}]").fetchone()[0] == 0, table
    engine.memory.db.close()
    data = raw_bytes(path)
    for marker in (
        b"ZEBRA",
        b"GIRAFFE",
        old_key.encode(),
        key.encode(),
        OLD.encode(),
        NEW.encode(),
    ):
        assert marker not in data, marker


async def test_a_second_rotation_chains(tmp_path: Path, runner: CliRunner, settings) -> None:
    path = tmp_path / "twice.db"
    await populate(path, OLD, settings)
    assert rotate(runner, path, OLD, NEW)[0] == 0
    assert rotate(runner, path, NEW, NEWER)[0] == 0
    engine, backend = engine_for(path, NEWER, settings)
    await say(engine, "still there?")
    assert "ZEBRA" in backend.prompt_text(0)
    engine.memory.db.close()


async def test_rotation_refuses_what_would_lose_people(
    tmp_path: Path, runner: CliRunner, settings
) -> None:
    path = tmp_path / "refuse.db"
    await populate(path, OLD, settings)
    before = raw_bytes(path)
    code, output = rotate(runner, path, "not-the-old-secret-at-all-000", NEW)
    assert code == 1 and "not the secret this database was written with" in output
    assert rotate(runner, path, OLD, OLD) == (
        1,
        "Error: the new secret is the same as the old one\n",
    )
    code, output = rotate(runner, path, OLD, "short")
    assert code == 1 and "at least 16 characters" in output
    missing = runner.invoke(cli, ["memory", "rotate-secret", "--db", str(path)])
    assert missing.exit_code == 1 and "SOLACE_OLD_PSEUDONYM_SECRET and" in missing.output
    with Peer("read", path):  # a running bot has the database open
        code, output = rotate(runner, path, OLD, NEW)
    assert code == 1 and "stop it first" in output
    assert raw_bytes(path) == before  # nothing was changed by any refusal
    open_memory(path, OLD.encode()).db.close()


async def test_altered_retired_secrets_are_a_clear_storage_error(
    tmp_path: Path, runner: CliRunner, settings
) -> None:
    path = tmp_path / "tamper.db"
    await populate(path, OLD, settings)
    assert rotate(runner, path, OLD, NEW)[0] == 0
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE secret_check SET retired = 'AAAA' || substr(retired, 5)")
    with pytest.raises(StorageError, match="cannot be decrypted"):
        open_memory(path, NEW.encode())
