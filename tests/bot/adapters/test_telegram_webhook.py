"""Telegram webhook mode end to end: the real PTB Application runs its own webhook server, and the
fake Bot API (tests/servers/telegram.py) POSTs updates to it as Telegram does - or as an attacker
would. Real engine (echo backend), real SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3

import pytest
from pydantic import SecretStr

from bot import texts
from bot.adapters import commands as cc
from bot.adapters.telegram import ALLOWED_UPDATES
from tests.bot.adapters.helpers import eventually, row_counts, stored_texts
from tests.servers.rigs import rig_settings, telegram_rig, webhook_section
from tests.servers.telegram import FakeTelegramServer

pytestmark = pytest.mark.timeout(120)


def _claims(db_path) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT update_id, user_key, done_at IS NOT NULL FROM telegram_updates "
            "ORDER BY update_id"
        ).fetchall()


def _rows(db_path, table: str) -> int:
    with sqlite3.connect(db_path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def test_set_on_start_deleted_on_stop(memory, db_path) -> None:
    section = webhook_section(drop_pending_updates=False, webhook_max_connections=10)
    async with telegram_rig(memory, db_path, telegram=section) as rig:
        (call,) = rig.server.webhook.set_calls
        assert call["url"] == section["webhook_url"]
        assert call["allowed_updates"] == ALLOWED_UPDATES == ["message", "callback_query"]
        assert call["max_connections"] == 10 and not call.get("drop_pending_updates")
        assert len(call["secret_token"]) >= 32  # generated: no secret in the environment
        await rig.say(1, "hello over the webhook")
        assert rig.server.calls_of("getUpdates") == []
    assert len(rig.server.webhook.delete_calls) == 1 and rig.server.webhook.url == ""
    assert [d.status for d in rig.server.webhook.deliveries] == [200]


async def test_secret_from_the_environment_is_used(memory, db_path) -> None:
    secret = "s3cret-" + "x" * 30
    async with telegram_rig(
        memory, db_path, telegram=webhook_section(), telegram_webhook_secret=SecretStr(secret)
    ) as rig:
        assert rig.server.webhook.set_calls[0]["secret_token"] == secret
        await rig.say(2, "with a fixed secret")


async def test_every_command_and_a_crisis_message(memory, db_path) -> None:
    access = {"admin_user_ids": ["telegram:5"]}
    async with telegram_rig(memory, db_path, telegram=webhook_section(), access=access) as rig:
        await rig.say(5, "I had a long day")
        replies = []
        for command in ("/start", "/help", "/privacy", "/country GB", "/review on", "/stats"):
            await rig.server.send_text(5, command)
            expected = len(replies) + 2  # the turn's reply, then one per command
            await rig.server.wait_for(lambda n=expected: len(rig.replies(5)) == n)
            replies.append(rig.replies(5)[-1])
        start, help_, privacy, country, review, stats = replies
        assert "not a therapist" in start and help_ == texts.HELP_TEXT and "pseudonym" in privacy
        assert country == texts.COUNTRY_SET.format(country="GB")
        assert review.startswith(texts.REVIEW_ON[:20]) and "turns: 2" in stats
        await rig.server.send_text(5, "I want to kill myself")
        await rig.server.wait_for(lambda: "116 123" in rig.replies(5)[-1])
        assert "You said: I want to kill myself" not in rig.replies(5)
        await rig.server.send_text(5, "/export")
        await rig.server.wait_for(lambda: any(m.document for m in rig.server.sent_to(5)))
        upload = next(m for m in rig.server.sent_to(5) if m.document)
        assert "I had a long day" in json.dumps(json.loads(upload.document or b""))
        await rig.server.send_text(5, "/reset")
        await rig.server.wait_for(lambda: rig.replies(5)[-1] == texts.RESET_DONE)
        key = memory.pseudonym("telegram", "5")
        await rig.server.send_text(5, "/forget")
        await rig.server.wait_for(lambda: rig.server.sent_to(5)[-1].reply_markup is not None)
        question = rig.server.sent_to(5)[-1]
        assert question.text == cc.FORGET_CONFIRM
        await rig.server.press_button(5, question, "forget:yes")
        await rig.server.wait_for(lambda: question.text == texts.FORGET_DONE)
    assert row_counts(db_path, key) == dict.fromkeys(row_counts(db_path, key), 0)
    assert all(user_key is None and done for _, user_key, done in _claims(db_path))
    assert {d.status for d in rig.server.webhook.deliveries} == {200}


async def test_wrong_or_missing_secret_gets_403_and_changes_nothing(memory, db_path) -> None:
    async with telegram_rig(memory, db_path, telegram=webhook_section()) as rig:
        hook = rig.server.webhook
        update = {
            "update_id": 900,
            "message": rig.server._message(7, None, "private", {"text": "let me in"}),
        }
        body = json.dumps(update).encode()
        assert await hook.post(body) == 403  # no header
        assert await hook.post(body, secret="wrong-" + "x" * 30) == 403
        assert await hook.post(body, secret=hook.secret_token, content_type="text/plain") == 403
        assert await hook.post(b"x" * (10 << 20)) == 403  # 10 MB, no secret
        await rig.say(8, "a real message afterwards")
    assert rig.server.sent_to(7) == [] and "let me in" not in stored_texts(db_path)
    assert [c[0] for c in _claims(db_path)] == [1]  # only the real update was claimed


async def test_bodies_that_are_not_updates_get_an_error_and_change_nothing(
    memory, db_path, caplog
) -> None:
    async with telegram_rig(memory, db_path, telegram=webhook_section()) as rig:
        hook = rig.server.webhook
        secret = hook.secret_token
        with caplog.at_level(logging.DEBUG, logger="telegram"):
            assert await hook.post(b"not json at all", secret=secret) == 500
            assert await hook.post(b"\xff\xfe\x00binary", secret=secret) == 500
            assert await hook.post(b"x" * (10 << 20), secret=secret) == 500  # 10 MB garbage
            bogus = json.dumps({"hello": "private words"}).encode()
            assert await hook.post(bogus, secret=secret) == 400
        huge = {
            "update_id": 901,
            "message": rig.server._message(9, None, "private", {"text": "z" * (10 << 20)}),
        }
        assert await hook.deliver(huge) == 200  # taken, then dropped: Telegram never sends that
        await rig.say(9, "still here?")
    assert rig.replies(9) == [r for r in rig.replies(9) if r.endswith("You said: still here?")]
    assert stored_texts(db_path, "user") == ["still here?"]
    assert "private words" not in caplog.text and "zzzz" not in caplog.text
    assert secret is not None and secret not in caplog.text


async def test_unhandled_update_and_chat_types_get_no_answer_and_store_nothing(
    memory, db_path
) -> None:
    channel = {"id": -1009, "type": "channel", "title": "A channel"}
    post = {"message_id": 1, "date": 0, "chat": channel, "text": "channel post"}
    updates = [
        {"update_id": 950, "channel_post": post},
        {"update_id": 951, "message": {**post, "sender_chat": channel}},  # no sender
        {"update_id": 952, "my_chat_member": {"chat": channel, "date": 0,
         "from": {"id": 3, "is_bot": False, "first_name": "A"},
         "old_chat_member": {"status": "left", "user": {"id": 424242, "is_bot": True,
                                                        "first_name": "Solace"}},
         "new_chat_member": {"status": "member", "user": {"id": 424242, "is_bot": True,
                                                          "first_name": "Solace"}}}},
    ]  # fmt: skip
    async with telegram_rig(memory, db_path, telegram=webhook_section()) as rig:
        for update in updates:
            assert await rig.server.webhook.deliver(update) == 200
        await eventually(lambda: len(_claims(db_path)) == 3 and all(c[2] for c in _claims(db_path)))
    assert rig.server.sent == [] and rig.server.bad_requests == []
    assert (_rows(db_path, "users"), _rows(db_path, "turns"), _rows(db_path, "events")) == (0, 0, 0)
    assert all(user_key is None for _, user_key, _ in _claims(db_path))


@pytest.mark.parametrize("drop", [False, True])
async def test_updates_sent_while_stopped(memory, db_path, drop: bool) -> None:
    """Stopping deletes the webhook; Telegram keeps what comes meanwhile and delivers it after
    the next setWebhook - unless `drop_pending_updates`."""
    from bot.adapters.telegram import build_application, run_telegram
    from bot.backends import EchoBackend
    from bot.engine import build_engine

    async with FakeTelegramServer() as server:
        first = rig_settings(server, db_path, telegram=webhook_section())
        engine = build_engine(first, backend=EchoBackend(), memory=memory)
        async with run_telegram(build_application(engine, first), first):
            await server.send_text(11, "before")
            await server.wait_for(lambda: len(server.sent_to(11)) == 1)
        assert server.webhook.url == ""
        await server.send_text(11, "while you were away")
        assert server.webhook.info(len(server.updates))["pending_update_count"] == 1
        again = rig_settings(server, db_path, telegram=webhook_section(drop_pending_updates=drop))
        async with run_telegram(build_application(engine, again), again):
            if not drop:
                await server.wait_for(lambda: len(server.sent_to(11)) == 2)
            await server.send_text(11, "marker")
            await server.wait_for(lambda: server.sent_to(11)[-1].text == "You said: marker")
    expected = ["before", "marker"] if drop else ["before", "while you were away", "marker"]
    assert stored_texts(db_path, "user") == expected


# --- two processes behind one webhook URL ----------------------------------------------------


SHARED = SecretStr("shared-webhook-secret-" + "q" * 20)


@contextlib.asynccontextmanager
async def two_processes(memory, db_path):
    """Two bots (each its own engine, SQLite connection and webhook port) on one database, as
    two `solace serve` processes on one machine behind one proxy."""
    from bot.adapters.telegram import build_application, run_telegram
    from bot.backends import EchoBackend
    from bot.engine import build_engine
    from bot.memory import open_memory
    from tests.conftest import TEST_SECRET

    other_memory = open_memory(db_path, TEST_SECRET)
    async with FakeTelegramServer() as server:
        apps, engines, urls = [], [], []
        for store in (memory, other_memory):
            section = webhook_section(webhook_delete_on_stop=False)
            # one secret for both (from the environment): each would otherwise set its own
            settings = rig_settings(
                server, db_path, telegram=section, telegram_webhook_secret=SHARED
            )
            engine = build_engine(settings, backend=EchoBackend(), memory=store)
            apps.append(build_application(engine, settings))
            engines.append(engine)
            urls.append((settings, section["webhook_url"]))
        async with contextlib.AsyncExitStack() as stack:
            for app, (settings, _) in zip(apps, urls, strict=True):
                await stack.enter_async_context(run_telegram(app, settings))
            yield server, apps, engines, [url for _, url in urls]
    other_memory.db.close()


async def test_an_update_delivered_to_both_processes_is_answered_once(memory, db_path) -> None:
    async with two_processes(memory, db_path) as (server, _, _, urls):
        server.route = lambda update: urls  # every delivery reaches both (a retry elsewhere)
        for i in range(5):
            await server.send_text(21, f"message {i}")
        await server.wait_for(lambda: len(server.sent_to(21)) == 5)
        await eventually(lambda: len(stored_texts(db_path)) == 10)
        await server.send_text(21, "marker")
        await server.wait_for(lambda: (server.sent_to(21)[-1].text or "").endswith("marker"))
    assert len(server.sent_to(21)) == 6  # nothing answered twice
    assert stored_texts(db_path, "user") == [f"message {i}" for i in range(5)] + ["marker"]
    statuses = [d.status for d in server.webhook.deliveries]
    assert statuses == [200] * 12  # both took every update; only one handled it
    owners = {row[0] for row in _owners(db_path)}
    assert len(owners) <= 2 and len(_owners(db_path)) == 6


def _owners(db_path) -> list[tuple]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT claimed_by, update_id FROM telegram_updates").fetchall()


async def test_one_persons_updates_stay_in_order_across_processes(memory, db_path) -> None:
    """The first message goes to process A, which is slow; the second to B: B waits for A."""
    async with two_processes(memory, db_path) as (server, apps, engines, urls):
        release = asyncio.Event()
        respond = engines[0].respond

        async def slow(incoming):
            await release.wait()
            async for piece in respond(incoming):
                yield piece

        engines[0].respond = slow
        claims_b = apps[1].update_processor.claims
        seen: list[bool] = []
        blocked = claims_b.blocked

        def watched(update_id: int, user_key: str) -> bool:
            seen.append(blocked(update_id, user_key))
            return seen[-1]

        claims_b.blocked = watched
        server.route = lambda update: [urls[0] if update["update_id"] == 1 else urls[1]]
        await server.send_text(31, "first")
        await server.send_text(31, "second")
        await eventually(lambda: True in seen)  # B found A's earlier update unfinished
        assert server.sent_to(31) == []
        release.set()
        await server.wait_for(lambda: len(server.sent_to(31)) == 2)
        await server.send_text(32, "another person is not held up")
        await server.wait_for(lambda: len(server.sent_to(32)) == 1)
    first, second = ((m.text or "").rsplit("You said: ", 1)[1] for m in server.sent_to(31))
    assert (first, second) == ("first", "second")
    assert stored_texts(db_path, "user")[:2] == ["first", "second"]
