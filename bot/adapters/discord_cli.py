"""`solace discord sync`: register the slash commands (`discord_sync.py`) from the command line."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from bot.adapters.discord_sync import ScopeSync, describe, sync_commands
from bot.config import config_option, settings_or_exit
from bot.errors import SolaceError


async def _sync_with_settings(settings: Any, *, apply: bool) -> list[ScopeSync]:
    from bot.adapters.discord import build_client
    from bot.secrets import discord_token

    client = build_client(_NoEngine(), settings)
    client.sync_on_login = False  # type: ignore[attr-defined]  # this command syncs itself
    try:
        await client.login(discord_token(settings))
        return await sync_commands(client, apply=apply)
    finally:
        await client.close()


class _NoEngine:
    """Syncing needs the command tree, not the model or the database."""

    def log_id(self, platform: str, user_id: str) -> str:
        return "-"


@click.group()
def discord() -> None:
    """Discord operator commands."""


@discord.command()
@config_option
@click.option("--check", is_flag=True, help="Only compare; exit 1 when an update is needed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sync(config_file: Path | None, check: bool, as_json: bool) -> None:
    """Register the slash commands with Discord, only if they differ from what it has.

    Global by default (Discord shows changes within about an hour), or in the servers of
    `discord.command_guild_ids` (instantly). Idempotent: with nothing to change it sends no
    update. Token: SOLACE_DISCORD_TOKEN.
    """
    import discord as discord_lib

    settings = settings_or_exit(config_file)
    try:
        results = asyncio.run(_sync_with_settings(settings, apply=not check))
    except SolaceError as exc:
        raise click.ClickException(str(exc)) from exc
    except discord_lib.LoginFailure as exc:
        raise click.ClickException("Discord rejected SOLACE_DISCORD_TOKEN") from exc
    except discord_lib.HTTPException as exc:
        raise click.ClickException(f"Discord answered HTTP {exc.status} (code {exc.code})") from exc
    except OSError as exc:  # aiohttp's connection errors are OSErrors; they name host and port
        base = settings.discord.rest_base_url or "https://discord.com/api/v10"
        raise click.ClickException(f"cannot reach Discord at {base}: {type(exc).__name__}") from exc
    if as_json:
        click.echo(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for result in results:
            click.echo(describe(result))
    raise SystemExit(1 if check and any(r.status != "unchanged" for r in results) else 0)
