"""`solace discord sync` as an operator runs it: the real discord.py client against the loopback
Discord REST server, through the command line."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner, Result

from bot.cli import cli
from tests.servers.discord import FakeDiscordREST
from tests.servers.discord_app import ApplicationAPI
from tests.servers.rigs import free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def operator_env(clean_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment an operator's shell has; the CLI sets discord.py's REST base: restored."""
    import discord

    clean_env.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    return clean_env


async def _sync(*args: str, token: str) -> Result:
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["discord", "sync", *args])
    assert token not in result.output
    return result


async def test_check_then_sync_then_nothing_to_do(operator_env: pytest.MonkeyPatch) -> None:
    async with FakeDiscordREST() as rest:
        app = ApplicationAPI(rest)
        operator_env.setenv("SOLACE_DISCORD_TOKEN", rest.token)
        operator_env.setenv("SOLACE_DISCORD__REST_BASE_URL", rest.base_url)
        check = await _sync("--check", token=rest.token)
        assert check.exit_code == 1 and check.output.startswith("global: differs (added ")
        assert "global" not in app.commands  # --check never registers
        done = await _sync("--json", token=rest.token)
        again = await _sync("--check", token=rest.token)
    assert done.exit_code == 0
    [scope] = json.loads(done.output)
    assert scope["scope"] == "global" and scope["status"] == "updated"
    assert sorted(scope["added"]) == sorted(c["name"] for c in app.commands["global"])
    assert again.exit_code == 0 and again.output == "global: unchanged\n"
    assert app.command_requests == [("GET", "global"), ("GET", "global"), ("PUT", "global")] + [
        ("GET", "global")
    ]


async def test_a_rejected_token_or_no_discord_is_one_clear_line(
    operator_env: pytest.MonkeyPatch,
) -> None:
    async with FakeDiscordREST() as rest:
        ApplicationAPI(rest)
        wrong = rest.token[:-3] + "abc"
        operator_env.setenv("SOLACE_DISCORD_TOKEN", wrong)
        operator_env.setenv("SOLACE_DISCORD__REST_BASE_URL", rest.base_url)
        rejected = await _sync(token=wrong)
    assert rejected.exit_code == 1
    assert rejected.output == "Error: Discord rejected SOLACE_DISCORD_TOKEN\n"
    operator_env.setenv("SOLACE_DISCORD__REST_BASE_URL", f"http://127.0.0.1:{free_port()}/api/v10")
    unreachable = await _sync(token=wrong)
    assert unreachable.exit_code == 1 and unreachable.output.startswith("Error: ")
    assert "Traceback" not in unreachable.output and "127.0.0.1" in unreachable.output
    operator_env.delenv("SOLACE_DISCORD_TOKEN")
    missing = await _sync(token=wrong)
    assert missing.exit_code == 1 and "SOLACE_DISCORD_TOKEN" in missing.output
