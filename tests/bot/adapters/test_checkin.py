"""Issue 17: the concern check-in and a "yes" to it, end to end through both adapters.

The real engine, the real SafetyLayer (rules only, as the rigs screen, and once with the semantic
layer on), the echo backend and a real SQLite file, behind the real PTB Application and the real
discord.py client (tests/servers/rigs.py). The concern message is one the rules themselves put
at concern (a past attempt), so the exchange is the same with or without the semantic layer.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.safety.checkin import CHECKIN_SELF, HELP_ANYWHERE
from tests.bot.adapters.helpers import eventually
from tests.servers.rigs import discord_rig, telegram_rig

pytestmark = pytest.mark.timeout(120)
CONCERN = "I attempted suicide when I was 16 and it still comes back to me"
CRISIS_MARK = "not a therapist or an emergency service"
HELP_END = HELP_ANYWHERE[-30:]


def events(db_path: Path) -> list[str]:
    """Event kinds in the real SQLite file, oldest first."""
    with sqlite3.connect(db_path) as conn:
        return [row[0] for row in conn.execute("SELECT kind FROM events ORDER BY id")]


async def test_checkin_then_yes_through_telegram(memory, db_path) -> None:
    async with telegram_rig(memory, db_path) as rig:
        await rig.server.send_text(31, CONCERN)
        checkin = await rig.reply_ending(31, HELP_END)
        assert f"You said: {CONCERN}" in (checkin.text or "")  # the model's reply came first
        assert CHECKIN_SELF.split("?")[0] in (checkin.text or "")
        await rig.server.send_text(31, "yeah... kind of")
        await rig.server.wait_for(lambda: any(CRISIS_MARK in r for r in rig.replies(31)))
        assert not any("You said: yeah" in r for r in rig.replies(31))  # the model was not asked
        await eventually(lambda: "crisis" in events(db_path))
    assert events(db_path)[:2] == ["risk_raised", "concern"]


async def test_checkin_then_yes_through_discord(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        channel = rig.gateway.dm_channel(41)
        rig.gateway.send(41, CONCERN)
        checkin = await rig.reply_ending(channel, HELP_END)
        assert CHECKIN_SELF.split("?")[0] in checkin.content
        rig.gateway.send(41, "yes")
        await rig.rest.wait_for(lambda: any(CRISIS_MARK in r for r in rig.replies(channel)))
        assert not any("You said: yes" in r for r in rig.replies(channel))
        await eventually(lambda: "crisis" in events(db_path))


async def test_no_to_the_checkin_gets_an_ordinary_reply_through_telegram(memory, db_path) -> None:
    async with telegram_rig(memory, db_path) as rig:
        await rig.server.send_text(32, CONCERN)
        await rig.reply_ending(32, HELP_END)
        await rig.server.send_text(32, "no, I'm safe, I just wanted to say it")
        await rig.reply_ending(32, "You said: no, I'm safe, I just wanted to say it")
    assert not any(CRISIS_MARK in r for r in rig.replies(32))


@pytest.mark.slow
async def test_semantic_layer_through_telegram(memory, db_path) -> None:
    """The rigs screen with the rules; with the semantic layer on, a plan the rules miss gets
    the crisis reply through the real Telegram path (written for this test, no case file's)."""
    from bot.safety import screen_message
    from bot.safety.semantic import DEFAULT_CLASSIFIER_PATH, DEFAULT_ENCODER_PATH

    if not (DEFAULT_ENCODER_PATH.is_file() and DEFAULT_CLASSIFIER_PATH.is_file()):
        pytest.skip("run `make encoder` for the GGUF encoder")
    # A plain plan with the means ready. The subtler "sorted out who gets my record collection and
    # left a note for my sister on the fridge" scores P(crisis) 0.78 under the 2026-12-07
    # artifact, below its threshold of 0.86 (docs/safety.md: indirect recall is not reached).
    plan = "the note is written and the pills are counted out on my desk"
    assert not screen_message(plan).crisis
    async with telegram_rig(memory, db_path, safety={"semantic": True}) as rig:
        await rig.server.send_text(33, plan)
        await rig.server.wait_for(lambda: any(CRISIS_MARK in r for r in rig.replies(33)))
        assert not any("You said:" in r for r in rig.replies(33))  # the model was not asked
        await eventually(lambda: "crisis" in events(db_path))
