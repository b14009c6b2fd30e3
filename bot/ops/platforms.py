"""Health checks that ask the platforms: Telegram's webhook and Discord's slash commands.

Both answer None when there is nothing to ask (adapter off, polling mode, no usable token: the
token checks in `health.py` report that). A platform's error messages can hold the URL, and a
Telegram URL holds the token, so only exception types and HTTP statuses are shown.
"""

from __future__ import annotations

from typing import Any

from bot import texts
from bot.config import Settings
from bot.ops.checks import HTTP_TIMEOUT_SECONDS, Check
from bot.secrets import token_shape_ok

DISCORD_API = "https://discord.com/api/v10"


WEBHOOK_BACKLOG_WARN = 100
WEBHOOK_ERROR_RECENT_SECONDS = 3600


def check_telegram_webhook(settings: Settings, now: float) -> Check | None:
    """In webhook mode: getWebhookInfo - is the webhook set, to `telegram.webhook_url`, how many
    updates wait, Telegram's last delivery error. None in polling mode or without a usable token
    (the token check reports that)."""
    import httpx

    tg, token = settings.telegram, settings.telegram_token
    if not tg.enabled or tg.mode != "webhook" or token is None:
        return None
    if not token_shape_ok("telegram", token):
        return None
    url = f"{tg.base_url}{token.get_secret_value().strip()}/getWebhookInfo"
    try:
        response = httpx.get(url, timeout=HTTP_TIMEOUT_SECONDS)
        body = response.json()
    except httpx.HTTPError as exc:  # its message holds the URL, and so the token: never shown
        return Check("telegram_webhook", "fail", f"getWebhookInfo: {type(exc).__name__}")
    except ValueError:
        return Check("telegram_webhook", "fail", "getWebhookInfo: the answer is not JSON")
    if not isinstance(body, dict) or not body.get("ok"):
        said = str(body.get("description", "")) if isinstance(body, dict) else ""
        return Check(
            "telegram_webhook", "fail", f"getWebhookInfo: HTTP {response.status_code} {said}"
        )
    info = body.get("result") or {}
    set_url, pending = str(info.get("url") or ""), int(info.get("pending_update_count") or 0)
    if not set_url:
        return Check(
            "telegram_webhook",
            "fail",
            f"not set ({pending} pending updates); `solace serve` sets it at start - is it running?",
        )
    detail = f"set: {set_url}, {pending} pending updates"
    if set_url != tg.webhook_url:
        return Check(
            "telegram_webhook", "fail", f"{detail}; not telegram.webhook_url {tg.webhook_url}"
        )
    error_at = info.get("last_error_date")
    if error_at and now - float(error_at) < WEBHOOK_ERROR_RECENT_SECONDS:
        age = (now - float(error_at)) / 60
        error = info.get("last_error_message") or "unknown"
        return Check(
            "telegram_webhook", "warn", f"{detail}; delivery failed {age:.0f} min ago: {error}"
        )
    if pending > WEBHOOK_BACKLOG_WARN:
        return Check("telegram_webhook", "warn", f"{detail} (a backlog: is the bot answering?)")
    return Check("telegram_webhook", "ok", detail)


# --- Discord application (slash) commands (issue 20) ---------------------------------------------


def check_discord_commands(settings: Settings) -> Check | None:
    """What Discord has registered, in every scope the bot syncs (global, or the servers of
    `discord.command_guild_ids`), against this version's `texts.DISCORD_COMMANDS`: names and
    descriptions. A difference is a warning (people can still write to the bot; the `/` menu is
    stale) that names the commands and the fix; `solace discord sync --check` compares the full
    definitions (options, permissions)."""
    import httpx

    ds, token = settings.discord, settings.discord_token
    if not ds.enabled or token is None or not token_shape_ok("discord", token):
        return None
    base = (ds.rest_base_url or DISCORD_API).rstrip("/")
    headers = {"Authorization": f"Bot {token.get_secret_value().strip()}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=HTTP_TIMEOUT_SECONDS) as http:
            app = _discord_get(http, "/oauth2/applications/@me")
            if not isinstance(app, dict) or not app.get("id"):
                raise _DiscordAnswer("Discord REST: no application id in oauth2/applications/@me")
            app_id = app["id"]
            scopes = [
                (f"guild {guild}", f"/applications/{app_id}/guilds/{guild}/commands")
                for guild in ds.command_guild_ids
            ] or [("global", f"/applications/{app_id}/commands")]
            found = [(scope, _discord_get(http, path)) for scope, path in scopes]
    except _DiscordAnswer as exc:
        return Check("discord_commands", "fail", str(exc))
    except httpx.HTTPError as exc:
        return Check("discord_commands", "fail", f"Discord REST: {type(exc).__name__}")
    problems: list[str] = []
    fine: list[str] = []
    for scope, registered in found:
        differs = _command_differences(registered)
        (problems if differs else fine).append(f"{scope}: {differs or 'in sync'}")
    if problems:
        fix = "`solace discord sync` registers them" + (
            "" if ds.sync_commands else " (or set discord.sync_commands = true)"
        )
        return Check("discord_commands", "warn", "; ".join(problems + fine) + f"; {fix}")
    count = len(texts.DISCORD_COMMANDS)
    return Check("discord_commands", "ok", f"{count} commands registered, " + "; ".join(fine))


class _DiscordAnswer(Exception):
    """Discord answered, but not with what was asked (an HTTP error or not JSON)."""


def _discord_get(http: Any, path: str) -> Any:
    response = http.get(path)
    if response.status_code == 401:
        raise _DiscordAnswer("Discord rejected SOLACE_DISCORD_TOKEN (HTTP 401)")
    if response.status_code != 200:
        raise _DiscordAnswer(f"Discord REST: HTTP {response.status_code} for {path.split('/')[-1]}")
    try:
        return response.json()
    except ValueError:
        raise _DiscordAnswer("Discord REST: the answer is not JSON") from None


def _command_differences(registered: Any) -> str:
    """ "" when the registered commands are this version's; else what is missing/extra/changed."""
    if not isinstance(registered, list):
        return "an unexpected answer (not a list of commands)"
    theirs = {
        str(c.get("name")): str(c.get("description", "")) for c in registered if isinstance(c, dict)
    }
    mine = texts.DISCORD_COMMANDS
    if not theirs:
        return "no commands registered"
    parts = [
        f"{label} /{', /'.join(names)}"
        for label, names in (
            ("missing", sorted(set(mine) - set(theirs))),
            ("not this version's", sorted(set(theirs) - set(mine))),
            (
                "described otherwise",
                sorted(n for n in mine if n in theirs and theirs[n] != mine[n]),
            ),
        )
        if names
    ]
    return ", ".join(parts)
