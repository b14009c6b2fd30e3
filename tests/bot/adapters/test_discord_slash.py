"""Discord application commands end to end: INTERACTION_CREATE through the real discord.py client.

`tests/servers/discord_app.py` delivers the payloads to the client's own parser and records the
interaction callbacks, follow-ups and edits the bot sends to the local REST server.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from bot import texts
from bot.adapters import commands as cc, discord_slash as slash
from tests.bot.adapters.helpers import eventually, row_counts, stored_texts
from tests.servers.rigs import discord_rig

pytestmark = pytest.mark.timeout(120)


async def test_help_and_privacy_in_a_dm_are_ordinary_messages(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        token = rig.interactions.command(11, "help")
        defer, answer = await rig.app.wait_replies(token, 2)
        token = rig.interactions.command(11, "privacy")
        _, privacy = await rig.app.wait_replies(token, 2)
    assert (defer.kind, defer.type, defer.ephemeral) == ("callback", 5, False)
    assert (answer.kind, answer.ephemeral, answer.content) == ("followup", False, texts.HELP_TEXT)
    assert "pseudonym" in privacy.content and not privacy.ephemeral
    assert answer.data["allowed_mentions"] == {"parse": []}
    assert stored_texts(db_path) == []


async def test_every_answer_in_a_server_is_ephemeral(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        rig.gateway.add_guild()
        await rig.say(12, "my cat is called Miso")
        replies = {}
        for name in ("help", "reset", "export", "review", "country"):
            token = rig.interactions.command(12, name, guild=True)
            replies[name] = await rig.app.wait_replies(token, 2)
    for name, (defer, answer) in replies.items():
        assert defer.type == 5 and defer.ephemeral, name
        assert answer.ephemeral, name
    assert replies["reset"][1].content == texts.RESET_DONE
    export = replies["export"][1]
    data = json.loads(export.files[cc.EXPORT_FILE_NAME])
    assert "my cat is called Miso" in json.dumps(data)
    assert replies["review"][1].content == texts.REVIEW_STATUS.format(state="off")
    assert replies["country"][1].content == texts.COUNTRY_CLEARED
    assert rig.rest.sent_to(rig.gateway.dm_channel(12))  # only the DM conversation itself
    assert not any(m.files for m in rig.rest.sent)


async def test_export_in_a_dm_is_an_attachment_in_the_dm(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        await rig.say(13, "I walked by the sea")
        token = rig.interactions.command(13, "export")
        _, answer = await rig.app.wait_replies(token, 2)
    assert not answer.ephemeral
    assert rig.app.channels[token] == rig.gateway.dm_channel(13)
    assert "I walked by the sea" in answer.files[cc.EXPORT_FILE_NAME].decode()


async def test_forget_erases_only_on_the_owners_button(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        rig.gateway.add_guild()
        await rig.say(21, "my dog is called Pip")
        await eventually(lambda: len(stored_texts(db_path)) == 2)
        key = memory.pseudonym("discord", "21")
        token = rig.interactions.command(21, "forget", guild=True)
        _, ask = await rig.app.wait_replies(token, 2)
        assert len(stored_texts(db_path)) == 2  # asking erases nothing
        yes, no = (b["custom_id"] for b in ask.buttons)
        other = rig.interactions.press(22, ask, yes, guild=True)
        (refused,) = await rig.app.wait_replies(other)
        assert len(stored_texts(db_path)) == 2
        cancel = rig.interactions.press(21, ask, no, guild=True)
        _, cancelled = await rig.app.wait_replies(cancel, 2)
        assert len(stored_texts(db_path)) == 2
        press = rig.interactions.press(21, ask, yes, guild=True)
        ack, done = await rig.app.wait_replies(press, 2)
    assert ask.ephemeral and ask.content == cc.FORGET_CONFIRM.replace(
        " " + cc.FORGET_TYPED_HINT, ""
    )
    assert [b["label"] for b in ask.buttons] == [cc.FORGET_BUTTON_YES, cc.FORGET_BUTTON_NO]
    assert (refused.type, refused.ephemeral, refused.content) == (4, True, slash.NOT_YOUR_BUTTON)
    assert cancelled.content == cc.FORGET_CANCELLED
    assert (ack.type, done.kind, done.content) == (6, "edit", texts.FORGET_DONE)
    assert done.data["components"] == []  # the buttons are gone
    assert set(row_counts(db_path, key).values()) == {0}


async def test_country_autocomplete_and_choice(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        typed = rig.interactions.autocomplete(31, "country", "code", "united")
        (choices,) = await rig.app.wait_replies(typed)
        named = rig.interactions.command(31, "country", {"code": "United Kingdom"})
        _, set_by_name = await rig.app.wait_replies(named, 2)
        bad = rig.interactions.command(31, "country", {"code": "Atlantis"})
        _, invalid = await rig.app.wait_replies(bad, 2)
    assert choices.type == 8
    values = [c["value"] for c in choices.choices]
    assert "GB" in values and "US" in values and len(values) <= 25
    assert set_by_name.content == texts.COUNTRY_SET.format(country="GB")
    assert invalid.content == texts.COUNTRY_INVALID
    key = memory.pseudonym("discord", "31")
    assert memory.get_user(key).country == "GB"


async def test_review_on_and_off(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        on = rig.interactions.command(32, "review", {"choice": "on"})
        _, answer = await rig.app.wait_replies(on, 2)
    assert answer.content == texts.REVIEW_ON
    assert memory.review_consent(memory.pseudonym("discord", "32"))


async def test_stats_needs_an_admin_id_whatever_discord_shows(memory, db_path) -> None:
    access = {"admin_user_ids": ["discord:41"]}
    async with discord_rig(memory, db_path, access=access) as rig:
        rig.gateway.add_guild()
        refused = rig.interactions.command(42, "stats", guild=True)
        _, not_admin = await rig.app.wait_replies(refused, 2)
        allowed = rig.interactions.command(41, "stats", guild=True)
        _, counts = await rig.app.wait_replies(allowed, 2)
    assert not_admin.content == cc.NOT_ADMIN
    assert counts.ephemeral and "turns: 0" in counts.content
    stats = next(c for c in rig.client.tree.get_commands() if c.name == "stats")
    assert str(stats.to_dict(rig.client.tree)["default_member_permissions"]) == "8"  # Administrator


async def test_blocked_person_gets_nothing_but_their_data_rights(memory, db_path) -> None:
    access = {"block_user_ids": ["discord:51"]}
    async with discord_rig(memory, db_path, access=access) as rig:
        blocked = rig.interactions.command(51, "reset")
        typed = rig.interactions.autocomplete(51, "country", "code", "g")
        export = rig.interactions.command(51, "export")
        _, file = await rig.app.wait_replies(export, 2)
    assert rig.app.for_token(blocked) == [] and rig.app.for_token(typed) == []
    assert json.loads(file.files[cc.EXPORT_FILE_NAME]) is not None
    assert stored_texts(db_path) == []
    assert set(row_counts(db_path, memory.pseudonym("discord", "51")).values()) <= {0}


async def test_expired_interaction_is_dropped_before_anything_runs(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        await rig.say(61, "hello there")
        await eventually(lambda: len(stored_texts(db_path)) == 2)
        stale = rig.interactions.command(61, "reset", age=dt.timedelta(minutes=16))
        press = rig.interactions.press(
            61, _fake_reply(), "solace:forget:yes:61", age=dt.timedelta(minutes=20)
        )
        fresh = rig.interactions.command(61, "help")
        await rig.app.wait_replies(fresh, 2)
    assert rig.app.for_token(stale) == [] and rig.app.for_token(press) == []
    assert rig.app.refused == []  # the bot did not even try
    assert len(stored_texts(db_path)) == 2  # neither reset nor erased


async def test_unknown_interaction_at_discord_is_no_crash(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        await rig.say(62, "still here")
        await eventually(lambda: len(stored_texts(db_path)) == 2)
        # Young enough for the bot's clock, but Discord already forgot it (clocks differ).
        almost = rig.interactions.command(62, "reset", age=dt.timedelta(minutes=14))
        rig.app.dead_tokens.add(almost)
        await rig.rest.wait_for(lambda: bool(rig.app.refused))
        fresh = rig.interactions.command(62, "help")
        await rig.app.wait_replies(fresh, 2)
    assert rig.app.refused == [(almost, 404)]
    assert len(stored_texts(db_path)) == 2


@pytest.mark.parametrize("place", ["group", "unknown"])
async def test_unsupported_places_get_the_documented_answer(memory, db_path, place) -> None:
    async with discord_rig(memory, db_path) as rig:
        token = rig.interactions.command(71, "export", place=place)
        (answer,) = await rig.app.wait_replies(token)
    assert (answer.type, answer.ephemeral, answer.content) == (4, True, slash.UNSUPPORTED_PLACE)
    assert stored_texts(db_path) == []


async def test_servers_switched_off_point_to_dms(memory, db_path) -> None:
    async with discord_rig(memory, db_path, discord={"guilds": False}) as rig:
        rig.gateway.add_guild()
        token = rig.interactions.command(72, "help", guild=True)
        (answer,) = await rig.app.wait_replies(token)
    assert answer.content == slash.DMS_ONLY and answer.ephemeral
    contexts = rig.client.tree.get_commands()[0].to_dict(rig.client.tree)["contexts"]
    assert contexts == [1]  # registered for DMs only


async def test_failing_command_still_answers_without_text_in_logs(memory, db_path, caplog) -> None:
    async with discord_rig(memory, db_path) as rig:
        words = "secret words"

        async def broken(platform: str, user_id: str) -> None:
            raise RuntimeError(words)

        rig.engine.reset = broken
        with caplog.at_level(logging.ERROR):
            token = rig.interactions.command(81, "reset")
            _, answer = await rig.app.wait_replies(token, 2)
    assert answer.content == cc.FALLBACK
    assert "secret words" not in caplog.text and "RuntimeError" in caplog.text


async def test_crisis_in_a_dm_still_gets_the_safety_reply(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        rig.gateway.send(91, "I want to kill myself tonight")
        channel = rig.gateway.dm_channel(91)
        await rig.rest.wait_for(lambda: bool(rig.dm(91)))
        await eventually(lambda: memory.stats()["events_crisis"] == 1)
    reply = rig.rest.sent_to(channel)[0].content
    assert "You said" not in reply  # the fixed crisis reply, never the model
    assert "emergency" in reply.lower()


def _fake_reply() -> object:
    from tests.servers.discord_app import InteractionReply

    return InteractionReply("tok-0", "followup", None, {"content": "x"})
