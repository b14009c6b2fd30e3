"""Slash command sync against the local Discord: what it sends, and that it is idempotent."""

from __future__ import annotations

import pytest

from bot.adapters.discord_sync import sync_commands
from tests.servers.rigs import discord_rig

pytestmark = pytest.mark.timeout(120)


async def test_sync_overwrites_once_then_only_compares(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        first = await sync_commands(rig.client)
        second = await sync_commands(rig.client)
        rig.app.commands["global"][0]["description"] = "an older description"
        check = await sync_commands(rig.client, apply=False)
        third = await sync_commands(rig.client)
    assert [r.status for r in first] == ["updated"] and len(first[0].added) == 8
    assert [r.status for r in second] == ["unchanged"]
    assert check[0].status == "differs" and len(check[0].changed) == 1
    assert third[0].status == "updated"
    assert rig.app.command_requests == [
        ("GET", "global"),
        ("PUT", "global"),
        ("GET", "global"),
        ("GET", "global"),
        ("GET", "global"),
        ("PUT", "global"),
    ]


async def test_sync_to_test_servers_only(memory, db_path) -> None:
    discord = {"command_guild_ids": ["910000000000000001"]}
    async with discord_rig(memory, db_path, discord=discord) as rig:
        await sync_commands(rig.client)
        again = await sync_commands(rig.client)
    scope = "guild 910000000000000001"
    assert [r.status for r in again] == ["unchanged"]
    assert rig.app.command_requests == [("GET", scope), ("PUT", scope), ("GET", scope)]
    assert all("contexts" not in c for c in rig.app.commands[scope])


async def test_start_up_sync_is_off_unless_configured(memory, db_path) -> None:
    async with discord_rig(memory, db_path) as rig:
        pass
    assert rig.app.command_requests == []
    async with discord_rig(memory, db_path, discord={"sync_commands": True}) as rig:
        pass
    assert rig.app.command_requests == [("GET", "global"), ("PUT", "global")]
