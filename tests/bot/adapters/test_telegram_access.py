"""Telegram: who may talk to the bot, and how often (access lists, rate limits, admin commands)."""

from __future__ import annotations

from bot import texts
from bot.adapters import commands as cc
from tests.bot.adapters.helpers import GROUP_ID, eventually, row_counts, stored_texts
from tests.servers.rigs import telegram_rig


async def test_rate_limit_answers_kindly_once(memory, db_path) -> None:
    async with telegram_rig(memory, db_path, access={"messages_per_minute": 2}) as rig:
        for i in range(4):
            await rig.server.send_text(91, f"msg {i}")
        await rig.reply_ending(91, "You said: msg 1")
        await rig.say(92, "another user is not limited")
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
        await rig.say(101, "allowed person")
        await rig.server.send_text(101, "/stats")
        await rig.server.wait_for(lambda: rig.replies(101)[-1] == cc.NOT_ADMIN)
        await rig.server.send_text(103, "/stats")
        await rig.server.wait_for(lambda: len(rig.replies(103)) == 1)
    assert rig.replies(102) == []
    stats = rig.replies(103)[0]
    assert "turns: 2" in stats and "allowed person" not in stats
    assert "blocked person" not in stored_texts(db_path)


async def test_blocked_person_can_still_erase_and_export_but_nothing_else(memory, db_path) -> None:
    """#15: after a block, /forget yes and /export got no reply and the rows stayed."""
    async with telegram_rig(memory, db_path) as rig:
        await rig.say(121, "something I said before the block")
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
        await rig.say(122, "marker from someone else")  # everything before it was handled
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
        await rig.say(131, "hi")
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
