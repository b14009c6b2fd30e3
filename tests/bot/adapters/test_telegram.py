"""The Telegram adapter end to end: the real PTB Application over HTTP to a local fake Bot API.

Every test runs the real engine (echo backend, real SQLite file) behind the real
`telegram.ext.Application`; only Telegram's servers are replaced (tests/servers/telegram.py).
"""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest

from bot import texts
from bot.adapters import commands as cc
from bot.errors import ConfigError
from tests.bot.adapters.helpers import GROUP_ID, eventually, row_counts, stored_texts
from tests.servers.rigs import rig_settings, telegram_rig

pytestmark = pytest.mark.timeout(120)


async def test_conversation_of_several_turns(memory, db_path) -> None:
    async with telegram_rig(memory, db_path) as rig:
        first = await rig.say(11, "I had a rough day at work")
        assert "not a therapist" in first  # the notice comes with the first reply
        await rig.say(11, "my manager shouted at me")
        third = await rig.say(11, "thanks for listening")
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
        await rig.say(31, "please remember this secret")
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
        await rig.say(32, "hello")
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
        await rig.say(41, "my cat is called Miso")
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
        await rig.say(51, text)
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
        await rig.say(62, "marker")  # handled after the edit
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


async def test_log_ids_are_keyed_not_reversible(memory, db_path, caplog) -> None:
    """#15: log ids were sha256("telegram:<id>")[:12], reversible by enumerating ids."""
    import hashlib

    async with telegram_rig(memory, db_path, access={"messages_per_minute": 1}) as rig:
        with caplog.at_level(logging.INFO):
            await rig.say(5551234567, "one")
            await rig.server.send_text(5551234567, "two")
            await rig.server.wait_for(lambda: len(rig.replies(5551234567)) == 2)
        expected = rig.engine.log_id("telegram", "5551234567")
    unkeyed = hashlib.sha256(b"telegram:5551234567").hexdigest()[:12]
    key = memory.pseudonym("telegram", "5551234567")
    assert f"rate limit (messages) hit by {expected}" in caplog.text
    assert unkeyed not in caplog.text and key[:12] not in caplog.text
    assert "5551234567" not in caplog.text
