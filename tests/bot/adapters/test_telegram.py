"""The Telegram adapter end to end: the real PTB Application over HTTP to a local fake Bot API.

Every test runs the real engine (echo backend, real SQLite file) behind the real
`telegram.ext.Application`; only Telegram's servers are replaced (tests/servers/telegram.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from bot import texts
from bot.adapters import commands as cc
from bot.errors import ConfigError
from tests.servers.telegram import TelegramRig, rig_settings, telegram_rig

pytestmark = pytest.mark.timeout(120)
GROUP_ID = -100123


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll `predicate` until it holds (for state outside the fake server, like the DB)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def stored_texts(db_path: Path, role: str | None = None) -> list[str]:
    """Turn texts in the real SQLite file, oldest first."""
    with sqlite3.connect(db_path) as conn:
        sql = "SELECT text FROM turns" + (" WHERE role = ?" if role else "") + " ORDER BY id"
        return [row[0] for row in conn.execute(sql, (role,) if role else ())]


def row_counts(db_path: Path, user_key: str) -> dict[str, int]:
    """Rows that belong to `user_key` in every table that has the column."""
    with sqlite3.connect(db_path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {}
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            if "user_key" in columns:
                sql = f"SELECT COUNT(*) FROM {table} WHERE user_key = ?"
                counts[table] = conn.execute(sql, (user_key,)).fetchone()[0]
        return counts


@pytest.fixture
def db_path(memory, tmp_path: Path) -> Path:
    """The real SQLite file behind the `memory` fixture."""
    return tmp_path / "memory.db"


async def say(rig: TelegramRig, user: int, text: str, **kwargs) -> str:
    """Send `text` as `user` and wait for the echo reply; returns the reply's final text."""
    await rig.server.send_text(user, text, **kwargs)
    chat = kwargs.get("chat_id", user)
    sent = await rig.reply_ending(chat, f"You said: {text}")
    return sent.text or ""


async def test_conversation_of_several_turns(memory, db_path) -> None:
    async with telegram_rig(memory, db_path) as rig:
        first = await say(rig, 11, "I had a rough day at work")
        assert "not a therapist" in first  # the notice comes with the first reply
        await say(rig, 11, "my manager shouted at me")
        third = await say(rig, 11, "thanks for listening")
        assert third == "You said: thanks for listening"
        await eventually(lambda: len(stored_texts(db_path)) == 6)
    replies = rig.replies(11)
    assert len(replies) == 3  # one message per turn, nothing duplicated
    assert stored_texts(db_path, "user") == [
        "I had a rough day at work",
        "my manager shouted at me",
        "thanks for listening",
    ]
    assert (11, "typing") in rig.server.chat_actions
    sends = rig.server.calls_of("sendMessage") + rig.server.calls_of("editMessageText")
    assert sends and all("parse_mode" not in call for call in sends)  # plain text only
    assert rig.server.bad_requests == []


async def test_long_reply_is_streamed_and_split(memory, db_path) -> None:
    words = " ".join(f"word{i:03d}\U0001f44b\U0001f3ff" for i in range(300))  # 3,900 UTF-16
    async with telegram_rig(memory, db_path, generation={"max_new_tokens": 1000}) as rig:
        await rig.server.send_text(12, words)
        await rig.reply_ending(12, words.split()[-1])
    messages = rig.server.sent_to(12)
    assert len(messages) == 2  # notice + echo is ~4,600 units: two messages
    assert all(len((m.text or "").encode("utf-16-le")) // 2 <= 4096 for m in messages)
    shown = " ".join(m.text or "" for m in messages).split()
    assert shown[-300:] == words.split()  # every word whole, emoji intact, in order
    assert sum(len(m.history) for m in messages) > len(messages)  # edited in place


async def test_start_help_privacy(memory, db_path) -> None:
    async with telegram_rig(memory, db_path) as rig:
        await rig.server.send_text(21, "/start")
        await rig.server.wait_for(lambda: len(rig.replies(21)) == 1)
        await rig.server.send_text(21, "/help")
        await rig.server.wait_for(lambda: len(rig.replies(21)) == 2)
        await rig.server.send_text(21, "/privacy")
        await rig.server.wait_for(lambda: len(rig.replies(21)) == 3)
    start, help_, privacy = rig.replies(21)
    assert "not a therapist" in start and "/forget" in start
    assert help_ == texts.HELP_TEXT
    assert "pseudonym" in privacy
    assert stored_texts(db_path) == []  # commands store no conversation


async def test_forget_with_button_erases_every_row(memory, db_path) -> None:
    async with telegram_rig(memory, db_path) as rig:
        await say(rig, 31, "please remember this secret")
        await eventually(lambda: len(stored_texts(db_path)) == 2)
        key = memory.pseudonym("telegram", "31")
        assert sum(row_counts(db_path, key).values()) >= 3
        await rig.server.send_text(31, "/forget")
        await rig.server.wait_for(lambda: rig.server.sent_to(31)[-1].reply_markup is not None)
        question = rig.server.sent_to(31)[-1]
        assert question.text == cc.FORGET_CONFIRM
        assert stored_texts(db_path) != []  # nothing erased before confirming
        await rig.server.press_button(31, question, "forget:yes")
        await rig.server.wait_for(lambda: question.text == texts.FORGET_DONE)
    assert row_counts(db_path, key) == dict.fromkeys(row_counts(db_path, key), 0)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 0


async def test_forget_yes_and_cancel(memory, db_path) -> None:
    async with telegram_rig(memory, db_path) as rig:
        await say(rig, 32, "hello")
        await rig.server.send_text(32, "/forget")
        await rig.server.wait_for(lambda: rig.server.sent_to(32)[-1].reply_markup is not None)
        question = rig.server.sent_to(32)[-1]
        await rig.server.press_button(32, question, "forget:no")
        await rig.server.wait_for(lambda: question.text == cc.FORGET_CANCELLED)
        await eventually(lambda: len(stored_texts(db_path)) == 2)
        await rig.server.send_text(32, "/forget yes")
        await rig.server.wait_for(lambda: rig.replies(32)[-1] == texts.FORGET_DONE)
    assert stored_texts(db_path) == []


async def test_export_sends_the_users_data_as_json(memory, db_path) -> None:
    async with telegram_rig(memory, db_path) as rig:
        await say(rig, 41, "my cat is called Miso")
        await eventually(lambda: len(stored_texts(db_path)) == 2)
        await rig.server.send_text(41, "/export")
        await rig.server.wait_for(lambda: any(m.document for m in rig.server.sent_to(41)))
    upload = next(m for m in rig.server.sent_to(41) if m.document)
    assert upload.file_name == cc.EXPORT_FILE_NAME
    data = json.loads(upload.document or b"")
    dumped = json.dumps(data)
    assert "my cat is called Miso" in dumped and "You said: my cat is called Miso" in dumped


async def test_429_during_streaming_is_retried_without_duplicates(memory, db_path) -> None:
    text = " ".join(f"calm{i}" for i in range(60))
    async with telegram_rig(memory, db_path) as rig:
        rig.server.fail_next("sendMessage", retry_after=1)
        rig.server.fail_next("editMessageText", retry_after=1)
        await say(rig, 51, text)
        await eventually(lambda: len(stored_texts(db_path)) == 2)
    assert rig.server.rate_limited == ["sendMessage", "editMessageText"]
    messages = rig.server.sent_to(51)
    assert len(messages) == 1  # the retried send did not create a second message
    assert (messages[0].text or "").endswith("You said: " + text)
    assert rig.server.bad_requests == []


async def test_non_text_message_gets_a_kind_reply(memory, db_path) -> None:
    async with telegram_rig(memory, db_path) as rig:
        await rig.server.send_sticker(61)
        await rig.server.wait_for(lambda: len(rig.replies(61)) == 1)
    assert rig.replies(61) == [cc.NON_TEXT_REPLY]
    assert stored_texts(db_path) == []


async def test_edited_message_is_not_answered_twice(memory, db_path) -> None:
    async with telegram_rig(memory, db_path) as rig:
        message_id = await rig.server.send_text(62, "I feel sad")
        await rig.reply_ending(62, "You said: I feel sad")
        await rig.server.edit_text(62, message_id, "I feel very sad")
        await say(rig, 62, "marker")  # handled after the edit
    assert len(rig.replies(62)) == 2
    assert "I feel very sad" not in stored_texts(db_path)


async def test_two_users_concurrently(memory, db_path) -> None:
    async with telegram_rig(memory, db_path) as rig:
        for i in range(3):
            await rig.server.send_text(71, f"alice {i}")
            await rig.server.send_text(72, f"bob {i}")
        for i in range(3):
            await rig.reply_ending(71, f"You said: alice {i}")
            await rig.reply_ending(72, f"You said: bob {i}")
        await eventually(lambda: len(stored_texts(db_path)) == 12)
    for user, name in ((71, "alice"), (72, "bob")):
        replies = rig.replies(user)
        assert len(replies) == 3
        assert [r.rsplit("You said: ", 1)[1] for r in replies] == [f"{name} {i}" for i in range(3)]


async def test_group_answers_only_mentions_and_replies(memory, db_path) -> None:
    group = {"chat_id": GROUP_ID, "chat_type": "group"}
    async with telegram_rig(memory, db_path) as rig:
        await rig.server.send_text(81, "someone else's private news", **group)
        await rig.server.send_text(82, "/export", **group)  # personal data: never in a group
        mentioned = await rig.server.send_text(81, "are you there", mention=True, **group)
        answer = await rig.reply_ending(GROUP_ID, "You said: are you there")
        await rig.server.send_text(81, "thanks", reply_to=answer, **group)
        await rig.reply_ending(GROUP_ID, "You said: thanks")
        await eventually(lambda: len(stored_texts(db_path)) == 4)
    texts_in_group = rig.replies(GROUP_ID)
    assert cc.PRIVATE_ONLY in texts_in_group
    assert len(texts_in_group) == 3
    assert answer.reply_to == mentioned  # in a group the answer quotes what it answers
    assert "someone else's private news" not in " ".join(stored_texts(db_path))
    assert stored_texts(db_path, "user") == ["are you there", "thanks"]
    assert not any(m.document for m in rig.server.sent)


async def test_rate_limit_answers_kindly_once(memory, db_path) -> None:
    async with telegram_rig(memory, db_path, access={"messages_per_minute": 2}) as rig:
        for i in range(4):
            await rig.server.send_text(91, f"msg {i}")
        await rig.reply_ending(91, "You said: msg 1")
        await say(rig, 92, "another user is not limited")
    replies = rig.replies(91)
    assert sum(r.startswith("I want to give each of your messages") for r in replies) == 1
    assert len(replies) == 3  # two answers and one kind notice; the 4th is not answered again
    assert stored_texts(db_path, "user")[:2] == ["msg 0", "msg 1"]
    assert "msg 2" not in stored_texts(db_path)


async def test_access_lists_and_admin_stats(memory, db_path) -> None:
    access = {
        "enabled": True,
        "allow_user_ids": ["101", "telegram:103"],
        "block_user_ids": ["102"],
        "admin_user_ids": ["telegram:103"],
    }
    async with telegram_rig(memory, db_path, access=access) as rig:
        await rig.server.send_text(102, "blocked person")
        await rig.server.send_text(104, "stranger")
        await rig.server.wait_for(lambda: rig.replies(104) == [cc.NOT_ALLOWED])
        await say(rig, 101, "allowed person")
        await rig.server.send_text(101, "/stats")
        await rig.server.wait_for(lambda: rig.replies(101)[-1] == cc.NOT_ADMIN)
        await rig.server.send_text(103, "/stats")
        await rig.server.wait_for(lambda: len(rig.replies(103)) == 1)
    assert rig.replies(102) == []
    stats = rig.replies(103)[0]
    assert "turns: 2" in stats and "allowed person" not in stats
    assert "blocked person" not in stored_texts(db_path)


async def test_handler_error_logs_no_text_and_sends_fallback(memory, db_path, caplog) -> None:
    async with telegram_rig(memory, db_path) as rig:

        async def broken_export(platform: str, user_id: str) -> dict:
            words = "secret words from the user"
            raise RuntimeError(words)

        rig.engine.export = broken_export
        with caplog.at_level(logging.ERROR):
            await rig.server.send_text(111, "/export")
            await rig.server.wait_for(lambda: rig.replies(111) == [cc.FALLBACK])
    assert "telegram handler failed: RuntimeError" in caplog.text
    assert "secret words" not in caplog.text


def test_token_errors_are_clear_and_never_echo_the_token(tmp_path) -> None:
    from bot.config import Settings
    from bot.secrets import telegram_token

    with pytest.raises(ConfigError, match="SOLACE_TELEGRAM_TOKEN is not set"):
        telegram_token(Settings(memory={"db_path": tmp_path / "x.db"}))
    bad = "12345:short-and-wrong"
    with pytest.raises(ConfigError, match="malformed") as info:
        telegram_token(Settings(memory={"db_path": tmp_path / "x.db"}, telegram_token=bad))
    assert bad not in str(info.value)


async def test_revoked_token_fails_at_start(memory, db_path) -> None:
    from telegram.error import InvalidToken

    from bot.adapters.telegram import build_application, run_telegram
    from bot.backends import EchoBackend
    from bot.engine import build_engine
    from tests.servers.telegram import FakeTelegramServer

    async with FakeTelegramServer() as server:
        settings = rig_settings(server, db_path)
        server.token = "1:" + "z" * 35  # Telegram no longer knows our token: 401 Unauthorized
        engine = build_engine(settings, backend=EchoBackend(), memory=memory)
        with pytest.raises(InvalidToken):
            async with run_telegram(build_application(engine, settings), settings):
                pass


# --- `solace serve` ----------------------------------------------------------------------------
async def test_solace_serve_end_to_end_and_token_never_logged(tmp_path: Path) -> None:
    """The real CLI in a subprocess: starts, answers over Telegram, stops on SIGTERM."""
    import os
    import signal
    import sys

    from tests.servers.telegram import FakeTelegramServer

    async with FakeTelegramServer() as server:
        env = {
            **os.environ,
            "SOLACE_TELEGRAM_TOKEN": server.token,
            "SOLACE_TELEGRAM__BASE_URL": server.base_url,
            "SOLACE_TELEGRAM__BASE_FILE_URL": server.base_file_url,
            "SOLACE_TELEGRAM__POLL_TIMEOUT_SECONDS": "1",
            "SOLACE_MEMORY__DB_PATH": str(tmp_path / "serve.db"),
            "SOLACE_MEMORY__CONTEXT_REPRESENTATION": "raw",
            "SOLACE_PSEUDONYM_SECRET": "s" * 32,
            "SOLACE_JOBS__ENABLED": "false",
        }
        env.pop("SOLACE_CONFIG", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "-vv",
            "serve",
            "--telegram",
            "--backend",
            "echo",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await server.send_text(5, "hello from the real cli")
            await server.wait_for(
                lambda: any(
                    (m.text or "").endswith("You said: hello from the real cli")
                    for m in server.sent_to(5)
                ),
                timeout=60,
            )
        finally:
            await server.release_polls()
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    log = err.decode()
    assert proc.returncode == 0, log[-2000:]
    assert "telegram: polling as @solace_test_bot" in log
    assert server.token not in log and server.token.split(":")[1] not in log
    assert "hello from the real cli" not in log  # message text is never logged


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["serve"], {}, "nothing to serve"),
        (["serve", "--telegram"], {}, "SOLACE_TELEGRAM_TOKEN is not set"),
        (["serve", "--telegram"], {"SOLACE_TELEGRAM_TOKEN": "oops"}, "malformed"),
        (["serve", "--discord"], {"SOLACE_DISCORD_TOKEN": "Bot a.b.c"}, "without 'Bot '"),
    ],
)
def test_serve_start_up_errors_are_clear(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, args, env, expected
) -> None:
    from click.testing import CliRunner

    from bot.cli import cli

    clean_env.setenv("SOLACE_MEMORY__DB_PATH", str(tmp_path / "x.db"))
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 1
    assert expected in result.output
    assert "oops" not in result.output


def test_redactor_blanks_tokens_in_messages_args_and_tracebacks() -> None:
    from bot.serve import SecretRedactor

    token = "123456:" + "A" * 35
    redactor = SecretRedactor([token])
    try:
        raise ValueError(f"https://api.telegram.org/bot{token}/getMe failed")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "url %s", (f"/bot{token}/x",), sys.exc_info()
        )
    assert redactor.filter(record)
    formatted = logging.Formatter().format(record)
    assert token not in formatted and "[token]" in formatted


@pytest.mark.slow
async def test_real_smollm2_reply_through_telegram(memory, db_path, smollm2_gguf) -> None:
    """One real-model turn on this path: SmolLM2 via llama-cpp-python streams into Telegram."""
    from bot.backends import LlamaCppBackend

    backend = LlamaCppBackend(smollm2_gguf, n_ctx=1024, n_threads=2, cache_mb=0)
    memory.mark_notice_seen(memory.pseudonym("telegram", "121"), "telegram")  # model text only
    async with telegram_rig(
        memory, db_path, backend=backend, generation={"max_new_tokens": 48, "seed": 1}
    ) as rig:
        await rig.server.send_text(121, "I feel nervous about my exam tomorrow.")
        await eventually(lambda: len(stored_texts(db_path, "assistant")) == 1, timeout=120)
        stored = stored_texts(db_path, "assistant")[0]
        await rig.server.wait_for(
            lambda: bool(rig.replies(121)) and rig.replies(121)[-1] == stored.strip()
        )
    assert len(rig.replies(121)) == 1 and stored.strip()  # one streamed message, as stored


async def test_failure_mid_reply_keeps_what_was_shown_and_adds_a_fallback(memory, db_path) -> None:
    async with telegram_rig(memory, db_path) as rig:

        async def breaks_halfway(msg):
            yield "I hear how hard "
            yield "this week has been."
            raise RuntimeError("lost the model")

        rig.engine.respond = breaks_halfway
        await rig.server.send_text(131, "a hard week")
        await rig.server.wait_for(lambda: rig.replies(131)[-1:] == [cc.FALLBACK])
    assert rig.replies(131) == ["I hear how hard this week has been.", cc.FALLBACK]


async def test_restart_does_not_answer_old_messages_again(memory, db_path) -> None:
    from bot.adapters.telegram import build_application, run_telegram
    from bot.backends import EchoBackend
    from bot.engine import build_engine
    from tests.servers.telegram import FakeTelegramServer

    async with FakeTelegramServer() as server:
        settings = rig_settings(server, db_path)
        engine = build_engine(settings, backend=EchoBackend(), memory=memory)
        for run, text in enumerate(["before the restart", "after the restart"]):
            async with run_telegram(build_application(engine, settings), settings):
                await server.send_text(141, text)
                await server.wait_for(
                    lambda t=text: any((m.text or "").endswith(t) for m in server.sent_to(141))
                )
                await server.release_polls()
            server.reopen_polls()
            assert len(server.sent_to(141)) == run + 1
    assert stored_texts(db_path, "user") == ["before the restart", "after the restart"]


async def test_blocked_person_can_still_erase_and_export_but_nothing_else(memory, db_path) -> None:
    """#15: after a block, /forget yes and /export got no reply and the rows stayed."""
    async with telegram_rig(memory, db_path) as rig:
        await say(rig, 121, "something I said before the block")
        await eventually(lambda: len(stored_texts(db_path)) == 2)
    key = memory.pseudonym("telegram", "121")
    async with telegram_rig(memory, db_path, access={"block_user_ids": ["121"]}) as rig:
        await rig.server.send_text(121, "hello?")
        await rig.server.send_text(121, "/help")
        await rig.server.send_text(121, "/export")
        await rig.server.wait_for(lambda: any(m.document for m in rig.server.sent_to(121)))
        upload = next(m for m in rig.server.sent_to(121) if m.document)
        assert "something I said before the block" in (upload.document or b"").decode()
        await rig.server.send_text(121, "/forget")
        await rig.server.wait_for(lambda: rig.server.sent_to(121)[-1].reply_markup is not None)
        question = rig.server.sent_to(121)[-1]
        await rig.server.press_button(121, question, "forget:yes")
        await rig.server.wait_for(lambda: question.text == texts.FORGET_DONE)
        await rig.server.send_text(121, "/export", chat_id=GROUP_ID, chat_type="group")
        await say(rig, 122, "marker from someone else")  # everything before it was handled
    sent = rig.server.sent_to(121)
    assert [bool(m.document) for m in sent] == [True, False]  # the export, then the question
    assert rig.replies(121) == [texts.FORGET_DONE]  # no answer to "hello?" or /help
    assert rig.replies(GROUP_ID) == []  # in a group a blocked person gets nothing at all
    assert sum(row_counts(db_path, key).values()) == 0
    assert "hello?" not in stored_texts(db_path)


async def test_commands_have_their_own_limit_and_forget_always_works(memory, db_path) -> None:
    """#15: with messages_per_minute = 2, 25 /exports produced 25 documents."""
    access = {"messages_per_minute": 2, "commands_per_minute": 30, "exports_per_hour": 3}
    async with telegram_rig(memory, db_path, access=access) as rig:
        await say(rig, 131, "hi")
        for _ in range(25):
            await rig.server.send_text(131, "/export")
        await rig.server.send_text(131, "/forget yes")
        await rig.server.wait_for(lambda: texts.FORGET_DONE in rig.replies(131))
    sent = rig.server.sent_to(131)
    assert sum(1 for m in sent if m.document) == 3
    notices = [m.text for m in sent if (m.text or "").startswith("I've made several copies")]
    assert len(notices) == 1  # told once, then quiet until the window passes
    assert stored_texts(db_path) == []


async def test_command_flood_is_limited_but_forget_is_not(memory, db_path) -> None:
    async with telegram_rig(memory, db_path, access={"commands_per_minute": 3}) as rig:
        for _ in range(6):
            await rig.server.send_text(141, "/help")
        await rig.server.send_text(141, "/forget yes")
        await rig.server.wait_for(lambda: texts.FORGET_DONE in rig.replies(141))
    replies = rig.replies(141)
    assert replies.count(texts.HELP_TEXT) == 3
    assert sum(r.startswith("You've sent quite a few commands") for r in replies) == 1


async def test_log_ids_are_keyed_not_reversible(memory, db_path, caplog) -> None:
    """#15: log ids were sha256("telegram:<id>")[:12], reversible by enumerating ids."""
    import hashlib

    async with telegram_rig(memory, db_path, access={"messages_per_minute": 1}) as rig:
        with caplog.at_level(logging.INFO):
            await say(rig, 5551234567, "one")
            await rig.server.send_text(5551234567, "two")
            await rig.server.wait_for(lambda: len(rig.replies(5551234567)) == 2)
        expected = rig.engine.log_id("telegram", "5551234567")
    unkeyed = hashlib.sha256(b"telegram:5551234567").hexdigest()[:12]
    key = memory.pseudonym("telegram", "5551234567")
    assert f"rate limit (messages) hit by {expected}" in caplog.text
    assert unkeyed not in caplog.text and key[:12] not in caplog.text
    assert "5551234567" not in caplog.text
