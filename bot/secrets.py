"""Platform tokens: where each comes from and the shape it must have — one rule per platform.

`solace serve` (the adapters), `solace health` and the moderator report's posting all read a
token through here, so a token one of them accepts, the others accept too. Tokens come from the
environment only (`bot.config` refuses them in TOML); no message here ever echoes one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import SecretStr

from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.config import Settings

# Shapes only. Telegram: "<bot id>:<secret>" as @BotFather gives it. Discord: three base64url
# parts separated by dots (user id, timestamp, HMAC), as the developer portal shows it.
TOKEN_PATTERNS: dict[str, re.Pattern[str]] = {
    "telegram": re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{30,}$"),
    "discord": re.compile(r"^[A-Za-z0-9_-]{18,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}$"),
}


def token_shape_ok(platform: str, secret: SecretStr) -> bool:
    """True when the token has the shape `platform` issues (surrounding blanks ignored)."""
    return TOKEN_PATTERNS[platform].match(secret.get_secret_value().strip()) is not None


def telegram_token(settings: Settings) -> str:
    """The bot token from SOLACE_TELEGRAM_TOKEN; a ConfigError (never echoing it) if unusable."""
    secret = settings.telegram_token
    if secret is None or not secret.get_secret_value().strip():
        raise ConfigError("SOLACE_TELEGRAM_TOKEN is not set; get a token from @BotFather")
    if not token_shape_ok("telegram", secret):
        raise ConfigError(
            "SOLACE_TELEGRAM_TOKEN is malformed: expected '<digits>:<35 letters, digits, _ or ->' "
            "as @BotFather gives it"
        )
    return secret.get_secret_value().strip()


def discord_token(settings: Settings) -> str:
    """The bot token from SOLACE_DISCORD_TOKEN; a ConfigError (never echoing it) if unusable."""
    secret = settings.discord_token
    if secret is None or not secret.get_secret_value().strip():
        raise ConfigError(
            "SOLACE_DISCORD_TOKEN is not set; copy the bot token from the Discord developer "
            "portal (Applications > your app > Bot > Reset Token)"
        )
    if secret.get_secret_value().strip().lower().startswith("bot "):
        raise ConfigError("SOLACE_DISCORD_TOKEN must be the bare token, without 'Bot '")
    if not token_shape_ok("discord", secret):
        raise ConfigError(
            "SOLACE_DISCORD_TOKEN is malformed: expected three dot-separated parts as the "
            "developer portal shows it"
        )
    return secret.get_secret_value().strip()


# Telegram's rule for setWebhook's secret_token: 1-256 of A-Z, a-z, 0-9, _ and -. Solace asks
# for at least 16 so that it cannot be guessed.
WEBHOOK_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,256}$")


def webhook_secret(settings: Settings) -> str:
    """The webhook's secret_token: SOLACE_TELEGRAM_WEBHOOK_SECRET, else a new random one.

    A new one is set with setWebhook at every start, which is right for one process; processes
    that share a webhook URL must share the secret through the environment.
    """
    import secrets

    secret = settings.telegram_webhook_secret
    if secret is None or not secret.get_secret_value().strip():
        return secrets.token_urlsafe(32)
    value = secret.get_secret_value().strip()
    if WEBHOOK_SECRET_PATTERN.match(value) is None:
        raise ConfigError(
            "SOLACE_TELEGRAM_WEBHOOK_SECRET is malformed: use 16-256 letters, digits, _ or -, "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return value
