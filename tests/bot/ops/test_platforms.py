"""`solace health` asking the platforms: Telegram's getWebhookInfo and Discord's registered slash
commands, each against its loopback server; no token ever printed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli


async def _check(name: str, *secrets: str) -> tuple[str, str] | None:
    """Run `solace health --json` off the loop (the servers are on it); one check's outcome."""
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["health", "--json"])
    for secret in secrets:
        assert secret not in result.output
    found = [c for c in json.loads(result.output)["checks"] if c["name"] == name]
    return (found[0]["status"], found[0]["detail"]) if found else None


# --- Telegram webhook mode ---------------------------------------------------------------------


async def test_webhook_check_reports_getwebhookinfo(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fake Bot API's getWebhookInfo: not set -> fail; set -> ok with URL and pending count;
    set elsewhere -> fail; a recent delivery error -> warn. The token never shows."""
    import time

    from tests.servers.rigs import free_port
    from tests.servers.telegram import FakeTelegramServer

    async with FakeTelegramServer() as server:
        url = f"http://127.0.0.1:{free_port()}/telegram"  # nothing listens: updates stay pending
        for name, value in {
            "SOLACE_TELEGRAM__ENABLED": "true",
            "SOLACE_TELEGRAM_TOKEN": server.token,
            "SOLACE_TELEGRAM__BASE_URL": server.base_url,
            "SOLACE_TELEGRAM__MODE": "webhook",
            "SOLACE_TELEGRAM__WEBHOOK_URL": url,
        }.items():
            monkeypatch.setenv(name, value)

        async def check() -> tuple[str, str] | None:
            return await _check("telegram_webhook", server.token)

        status, detail = await check()
        assert status == "fail" and "not set" in detail
        server.webhook.set({"url": url, "secret_token": "s" * 20})
        await server.push({"message": server._message(1, None, "private", {"text": "hi"})})
        assert await check() == ("ok", f"set: {url}, 1 pending updates")  # nobody listens
        server.webhook.last_error_message = "Connection refused"
        server.webhook.last_error_date = int(time.time()) - 120
        status, detail = await check()
        assert status == "warn" and "2 min ago: Connection refused" in detail
        server.webhook.set({"url": "https://elsewhere.example/hook"})
        status, detail = await check()
        assert status == "fail" and "not telegram.webhook_url" in detail
        monkeypatch.setenv("SOLACE_TELEGRAM__MODE", "polling")
        assert await check() is None  # polling: no webhook to report


# --- Discord slash commands ---------------------------------------------------------------------


async def test_discord_check_reports_the_command_sync_state(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing registered -> warn with the fix; after `solace discord sync` -> ok; a command
    missing, described otherwise or left over from another version -> warn naming it; per test
    server when `discord.command_guild_ids` is set; a rejected token -> fail. Never the token."""
    import discord

    from tests.servers.discord import FakeDiscordREST
    from tests.servers.discord_app import ApplicationAPI

    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)  # the CLI sets it
    async with FakeDiscordREST() as rest:
        app = ApplicationAPI(rest)
        for name, value in {
            "SOLACE_DISCORD__ENABLED": "true",
            "SOLACE_DISCORD_TOKEN": rest.token,
            "SOLACE_DISCORD__REST_BASE_URL": rest.base_url,
        }.items():
            monkeypatch.setenv(name, value)

        async def check() -> tuple[str, str] | None:
            return await _check("discord_commands", rest.token)

        status, detail = await check()
        assert status == "warn" and detail.startswith("global: no commands registered")
        assert "`solace discord sync` registers them" in detail
        synced = await asyncio.to_thread(CliRunner().invoke, cli, ["discord", "sync"])
        assert synced.exit_code == 0, synced.output
        assert await check() == ("ok", "8 commands registered, global: in sync")
        assert app.command_requests.count(("PUT", "global")) == 1  # health never registers

        registered = app.commands["global"]
        app.commands["global"] = [c for c in registered if c["name"] != "review"]
        app.commands["global"][0] = {**app.commands["global"][0], "description": "older words"}
        app.commands["global"].append({"name": "mood", "description": "a command since removed"})
        status, detail = await check()
        assert status == "warn"
        assert "missing /review" in detail and "not this version's /mood" in detail
        assert f"described otherwise /{registered[0]['name']}" in detail

        monkeypatch.setenv("SOLACE_DISCORD__COMMAND_GUILD_IDS", '["910000000000000001"]')
        status, detail = await check()
        assert status == "warn" and "guild 910000000000000001: no commands registered" in detail
        monkeypatch.setenv("SOLACE_DISCORD__SYNC_COMMANDS", "true")
        status, detail = await check()
        assert "(or set discord.sync_commands" not in detail  # start-up sync already on

        rest.token = rest.token[:-3] + "abc"  # Discord no longer accepts the bot's token
        status, detail = await check()
        assert status == "fail" and "rejected SOLACE_DISCORD_TOKEN" in detail
        monkeypatch.setenv("SOLACE_DISCORD__ENABLED", "false")
        assert await check() is None  # adapter off: nothing to ask Discord
