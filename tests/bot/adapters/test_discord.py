"""The Discord adapter end to end: real discord.py models and HTTPClient over loopback.

Gateway payloads go through the client's own parsers (tests/servers/discord.py), so real
`discord.Message` objects reach the real `on_message`; replies travel through discord.py's REST
client (rate-limit handling included) to a local fake of Discord's REST API.
"""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest

from bot import texts
from bot.adapters import commands as cc
from bot.errors import ConfigError
from tests.bot.adapters.helpers import eventually, row_counts, stored_texts
from tests.servers.discord import GUILD_CHANNEL_ID
from tests.servers.rigs import discord_rig

pytestmark = pytest.mark.timeout(120)


async def test_conversation_of_several_turns(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        first = await rig.say(11, "I can't sleep again")
        assert "not a therapist" in first
        await rig.say(11, "my thoughts keep racing")
        assert await rig.say(11, "thank you") == "You said: thank you"
        await eventually(lambda: len(stored_texts(db_path)) == 6)
    assert len(rig.dm(11)) == 3
    assert rig.gateway.dm_channel(11) in rig.rest.typing
    assert all(m.allowed_mentions == {"parse": [], "replied_user": False} for m in rig.rest.sent)
    assert stored_texts(db_path, "user") == [
        "I can't sleep again",
        "my thoughts keep racing",
        "thank you",
    ]


async def test_long_reply_is_split_at_2000(memory, db_path) -> None:
    words = " ".join(f"w{i:03d}\U0001f1eb\U0001f1f7" for i in range(300))  # flags must stay whole
    async with discord_rig(memory, db_path, generation={"max_new_tokens": 1000}) as rig:
        rig.gateway.send(12, words)
        await rig.reply_ending(rig.gateway.dm_channel(12), words.split()[-1])
    messages = rig.rest.sent_to(rig.gateway.dm_channel(12))
    assert len(messages) >= 2
    assert all(len(m.content) <= 2000 for m in messages)
    assert " ".join(m.content for m in messages).split()[-300:] == words.split()


async def test_commands_forget_and_export(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        rig.gateway.send(21, "/start")
        await rig.rest.wait_for(lambda: len(rig.dm(21)) == 1)
        assert "not a therapist" in rig.dm(21)[0]
        await rig.say(21, "my dog is called Pip")
        await eventually(lambda: len(stored_texts(db_path)) == 2)
        rig.gateway.send(21, "/export")
        channel = rig.gateway.dm_channel(21)
        await rig.rest.wait_for(lambda: any(m.files for m in rig.rest.sent_to(channel)))
        rig.gateway.send(21, "/forget")
        await rig.rest.wait_for(lambda: "/forget yes" in rig.dm(21)[-1])
        assert len(stored_texts(db_path)) == 2  # not without confirmation
        key = memory.pseudonym("discord", "21")
        rig.gateway.send(21, "/forget yes")
        await rig.rest.wait_for(lambda: rig.dm(21)[-1] == texts.FORGET_DONE)
    upload = next(m for m in rig.rest.sent_to(channel) if m.files)
    data = json.loads(upload.files[cc.EXPORT_FILE_NAME])
    assert "my dog is called Pip" in json.dumps(data)
    assert set(row_counts(db_path, key).values()) == {0}
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 0


async def test_429_during_streaming_is_retried_without_duplicates(memory, db_path) -> None:
    text = " ".join(f"steady{i}" for i in range(60))
    async with discord_rig(memory, db_path) as rig:
        rig.rest.fail_next("send", retry_after=0.3)
        rig.rest.fail_next("edit", retry_after=0.3)
        await rig.say(31, text)
        await eventually(lambda: len(stored_texts(db_path)) == 2)
    assert rig.rest.rate_limited == ["send", "edit"]
    messages = rig.rest.sent_to(rig.gateway.dm_channel(31))
    assert len(messages) == 1
    assert messages[0].content.endswith("You said: " + text)


async def test_non_text_message_gets_a_kind_reply(memory, db_path) -> None:
    sticker = {"sticker_items": [{"id": "1", "name": "hug", "format_type": 1}]}
    attachment = {
        "attachments": [
            {"id": "2", "filename": "voice.ogg", "size": 10, "url": "x", "proxy_url": "x"}
        ]
    }
    async with discord_rig(memory, db_path) as rig:
        rig.gateway.send(41, "", **sticker)
        rig.gateway.send(41, "", **attachment)
        await rig.rest.wait_for(lambda: len(rig.dm(41)) == 2)
    assert rig.dm(41) == [cc.NON_TEXT_REPLY, cc.NON_TEXT_REPLY]
    assert stored_texts(db_path) == []


async def test_edited_message_is_not_answered_twice(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        message_id = rig.gateway.send(42, "I feel lonely")
        await rig.reply_ending(rig.gateway.dm_channel(42), "You said: I feel lonely")
        rig.gateway.edit(42, message_id, "I feel very lonely")
        await rig.say(42, "marker")
    assert len(rig.dm(42)) == 2
    assert "I feel very lonely" not in stored_texts(db_path)


async def test_two_users_concurrently(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        for i in range(3):
            rig.gateway.send(51, f"ana {i}")
            rig.gateway.send(52, f"ben {i}")
        for i in range(3):
            await rig.reply_ending(rig.gateway.dm_channel(51), f"You said: ana {i}")
            await rig.reply_ending(rig.gateway.dm_channel(52), f"You said: ben {i}")
    for user, name in ((51, "ana"), (52, "ben")):
        got = [r.rsplit("You said: ", 1)[1] for r in rig.dm(user)]
        assert got == [f"{name} {i}" for i in range(3)]


async def test_server_answers_only_mentions_and_replies(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        rig.gateway.add_guild()
        rig.gateway.send(61, "someone else's private news", guild=True)
        mentioned = rig.gateway.send(61, "are you there", guild=True, mention=True)
        answer = await rig.reply_ending(GUILD_CHANNEL_ID, "You said: are you there")
        rig.gateway.send(61, "/export", guild=True, mention=True)
        await rig.rest.wait_for(lambda: rig.replies(GUILD_CHANNEL_ID)[-1] == cc.PRIVATE_ONLY)
        rig.gateway.send(61, "thanks", guild=True, reply_to=answer)
        await rig.reply_ending(GUILD_CHANNEL_ID, "You said: thanks")
        await eventually(lambda: len(stored_texts(db_path)) == 4)
    assert answer.reference == mentioned
    assert len(rig.replies(GUILD_CHANNEL_ID)) == 3
    assert "someone else's private news" not in " ".join(stored_texts(db_path))
    assert stored_texts(db_path, "user") == ["are you there", "thanks"]
    assert not any(m.files for m in rig.rest.sent)


async def test_rate_limit_and_access(memory, db_path) -> None:
    access = {
        "enabled": True,
        "allow_user_ids": ["71", "discord:73"],
        "block_user_ids": ["72"],
        "admin_user_ids": ["discord:73"],
        "messages_per_minute": 2,
    }
    async with discord_rig(memory, db_path, access=access) as rig:
        rig.gateway.send(72, "blocked person")
        rig.gateway.send(74, "stranger")
        await rig.rest.wait_for(lambda: rig.dm(74) == [cc.NOT_ALLOWED])
        for i in range(4):
            rig.gateway.send(71, f"msg {i}")
        await rig.reply_ending(rig.gateway.dm_channel(71), "You said: msg 1")
        rig.gateway.send(73, "/stats")
        await rig.rest.wait_for(lambda: len(rig.dm(73)) == 1)
    assert rig.dm(72) == []
    limited = [r for r in rig.dm(71) if r.startswith("I want to give each of your messages")]
    assert len(limited) == 1 and len(rig.dm(71)) == 3
    assert "turns:" in rig.dm(73)[0] and "msg" not in rig.dm(73)[0]
    assert "blocked person" not in stored_texts(db_path)


async def test_handler_error_logs_no_text_and_sends_fallback(memory, db_path, caplog) -> None:
    async with discord_rig(memory, db_path) as rig:

        async def broken_export(platform: str, user_id: str) -> dict:
            words = "secret words from the user"
            raise RuntimeError(words)

        rig.engine.export = broken_export
        with caplog.at_level(logging.ERROR):
            rig.gateway.send(81, "/export")
            await rig.rest.wait_for(lambda: rig.dm(81) == [cc.FALLBACK])
    assert "discord handler failed: RuntimeError" in caplog.text
    assert "secret words" not in caplog.text


def test_token_errors_and_intents(tmp_path) -> None:
    import discord

    from bot.adapters.discord import build_client, discord_intents
    from bot.config import Settings
    from bot.secrets import discord_token

    base = {"memory": {"db_path": tmp_path / "x.db"}}
    with pytest.raises(ConfigError, match="SOLACE_DISCORD_TOKEN is not set"):
        discord_token(Settings(**base))
    bad = "not-a-token"
    with pytest.raises(ConfigError, match="malformed") as info:
        discord_token(Settings(**base, discord_token=bad))
    assert bad not in str(info.value)
    with pytest.raises(ConfigError, match="without 'Bot '"):
        discord_token(Settings(**base, discord_token="Bot abc.def.ghi"))
    intents = discord_intents()
    assert intents.dm_messages and intents.guild_messages and intents.guilds
    assert not intents.message_content and not intents.members and not intents.presences
    sharded = build_client(object(), Settings(**base, discord={"sharded": True, "shard_count": 2}))
    assert isinstance(sharded, discord.AutoShardedClient) and sharded.shard_count == 2
    assert not isinstance(build_client(object(), Settings(**base)), discord.AutoShardedClient)


async def test_wrong_token_is_a_login_failure(memory, db_path) -> None:
    import discord

    from bot.adapters.discord import build_client
    from tests.servers.discord import TOKEN, FakeDiscordREST

    original = discord.http.Route.BASE
    try:
        async with FakeDiscordREST(token="another" + TOKEN) as rest:
            from bot.config import Settings

            settings = Settings(
                memory={"db_path": db_path}, discord={"rest_base_url": rest.base_url}
            )
            client = build_client(object(), settings)
            with pytest.raises(discord.LoginFailure):
                await client.login(TOKEN)
            await client.close()
    finally:
        discord.http.Route.BASE = original


async def test_sharded_client_answers_a_dm(memory, db_path) -> None:
    import discord

    async with discord_rig(memory, db_path, discord={"sharded": True, "shard_count": 2}) as rig:
        assert isinstance(rig.client, discord.AutoShardedClient)
        assert (await rig.say(91, "hello shards")).endswith("You said: hello shards")


async def test_failure_mid_reply_keeps_what_was_shown_and_adds_a_fallback(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:

        async def breaks_halfway(msg):
            yield "I hear how hard "
            yield "this week has been."
            raise RuntimeError("lost the model")

        rig.engine.respond = breaks_halfway
        rig.gateway.send(131, "a hard week")
        await rig.rest.wait_for(lambda: rig.dm(131)[-1:] == [cc.FALLBACK])
    assert rig.dm(131) == ["I hear how hard this week has been.", cc.FALLBACK]


async def test_blocked_person_can_still_erase_and_export_but_nothing_else(memory, db_path) -> None:
    """#15: blocked people could neither erase nor export their stored data."""
    async with discord_rig(memory, db_path) as rig:
        rig.gateway.send(91, "words from before the block")
        await rig.reply_ending(rig.gateway.dm_channel(91), "You said: words from before the block")
        await eventually(lambda: len(stored_texts(db_path)) == 2)
    async with discord_rig(memory, db_path, access={"block_user_ids": ["91"]}) as rig:
        channel = rig.gateway.dm_channel(91)
        rig.gateway.send(91, "hello?")
        rig.gateway.send(91, "/help")
        rig.gateway.send(91, "/export")
        await rig.rest.wait_for(lambda: any(m.files for m in rig.rest.sent_to(channel)))
        upload = next(m for m in rig.rest.sent_to(channel) if m.files)
        assert b"words from before the block" in next(iter(upload.files.values()))
        rig.gateway.send(91, "/export", guild=True, mention=True)  # not in a server
        rig.gateway.send(91, "/forget yes")
        await rig.rest.wait_for(lambda: texts.FORGET_DONE in rig.dm(91))
    assert rig.dm(91) == [cc.EXPORT_CAPTION, texts.FORGET_DONE]
    assert rig.replies(GUILD_CHANNEL_ID) == []
    assert stored_texts(db_path) == []


async def test_exports_are_limited_and_forget_always_works(memory, db_path) -> None:
    access = {"exports_per_hour": 2, "commands_per_minute": 50}
    async with discord_rig(memory, db_path, access=access) as rig:
        channel = rig.gateway.dm_channel(92)
        rig.gateway.send(92, "hi")
        await rig.reply_ending(channel, "You said: hi")
        for _ in range(10):
            rig.gateway.send(92, "/export")
        rig.gateway.send(92, "/forget yes")
        await rig.rest.wait_for(lambda: texts.FORGET_DONE in rig.dm(92))
    assert sum(1 for m in rig.rest.sent_to(channel) if m.files) == 2
    assert sum(r.startswith("I've made several copies") for r in rig.dm(92)) == 1
    assert stored_texts(db_path) == []
