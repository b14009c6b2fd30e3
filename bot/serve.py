"""`solace serve`: run the Telegram and/or Discord adapters in one process, one event loop, one model.

Tokens come from SOLACE_TELEGRAM_TOKEN / SOLACE_DISCORD_TOKEN and are checked before the model
loads; a missing, malformed or rejected token is a one-line error naming the variable. Every log
line passes a filter that blanks the tokens, in case a library ever prints a URL that holds one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot.config import config_option
from bot.errors import ConfigError

if TYPE_CHECKING:  # pydantic-settings stays out of `solace --help`
    from bot.config import Settings

logger = logging.getLogger(__name__)

REDACTED = "[token]"
SERVE_BACKEND = "llama-server"  # what model.backend = "auto" runs in `solace serve`


class SecretRedactor(logging.Filter):
    """Replaces secrets in every record (message, arguments and traceback) with "[token]"."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        if not self._secrets:
            return True
        record.msg = self._clean(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        return True


def install_redactor(secrets: list[str]) -> SecretRedactor:
    """Attach a SecretRedactor to every handler of the root logger (call after basicConfig)."""
    redactor = SecretRedactor(secrets)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING)
    for handler in root.handlers:
        handler.addFilter(redactor)
    return redactor


def _start_jobs(engine: Any, settings: Settings) -> Any:
    """The jobs area's scheduler on this loop, when enabled and installed; else None."""
    if not settings.jobs.enabled or importlib.util.find_spec("bot.audit.jobs") is None:
        return None
    from bot.audit.jobs import build_scheduler  # type: ignore[import-not-found,unused-ignore]

    scheduler = build_scheduler(engine, engine.memory, settings)
    scheduler.start()
    return scheduler


async def serve_platforms(
    engine: Any,
    settings: Settings,
    *,
    telegram: bool,
    discord: bool,
    stop: asyncio.Event,
) -> None:
    """Run the chosen adapters until `stop` is set (or Discord's connection fails for good)."""
    warm_up = getattr(engine, "warm_up", None)
    if warm_up is not None:  # load the context compressor now, not on someone's first message
        await warm_up()
    async with contextlib.AsyncExitStack() as stack:
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if telegram:
            from bot.adapters.telegram import build_application, run_telegram

            app = build_application(engine, settings)
            await stack.enter_async_context(run_telegram(app, settings))
            if settings.telegram.mode == "webhook":
                logger.warning(
                    "telegram: webhook %s as @%s", settings.telegram.webhook_url, app.bot.username
                )
            else:
                logger.warning("telegram: polling as @%s", app.bot.username)
        if discord:
            from bot.adapters.discord import build_client
            from bot.secrets import discord_token

            client = build_client(engine, settings)
            stack.push_async_callback(client.close)
            waits.append(asyncio.ensure_future(client.start(discord_token(settings))))
            logger.warning("discord: connecting")
        scheduler = _start_jobs(engine, settings)
        if scheduler is not None:
            stack.callback(scheduler.shutdown, wait=False)
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for future in pending:
            future.cancel()
        for future in done:
            future.result()  # re-raises a Discord start failure (e.g. a rejected token)


def _rejected(exc: BaseException) -> str | None:
    """A clear message when a platform refused the token; None for other errors."""
    from bot.errors import SolaceError

    if isinstance(exc, SolaceError):  # e.g. the webhook's port is taken
        return str(exc)
    name = type(exc).__name__
    if name == "InvalidToken":
        return "Telegram rejected SOLACE_TELEGRAM_TOKEN (revoked or mistyped); check @BotFather"
    if name == "LoginFailure":
        return "Discord rejected SOLACE_DISCORD_TOKEN; reset it in the developer portal"
    if name == "PrivilegedIntentsRequired":
        return "Discord refused the gateway intents; see docs/platforms.md"
    return None


async def _main(engine: Any, settings: Settings, telegram: bool, discord: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    await serve_platforms(engine, settings, telegram=telegram, discord=discord, stop=stop)


@click.command()
@click.option("--telegram/--no-telegram", default=None, help="Run the Telegram adapter.")
@click.option("--discord/--no-discord", default=None, help="Run the Discord adapter.")
@config_option
@click.option(
    "--backend",
    type=click.Choice(["llama-server", "llama-cpp", "openai", "echo"]),
    default=None,
    help="Model backend (default: model.backend from settings; auto = llama-server).",
)
def serve(
    telegram: bool | None, discord: bool | None, config_file: Path | None, backend: str | None
) -> None:
    """Serve Solace on Telegram and/or Discord (tokens from SOLACE_*_TOKEN)."""
    from bot.backends import close_backend
    from bot.config import load_settings
    from bot.engine import build_engine
    from bot.errors import SolaceError

    try:
        overrides: dict[str, Any] = {"model": {"backend": backend}} if backend else {}
        settings = serving_settings(load_settings(config_file, **overrides))
        use_tg = settings.telegram.enabled if telegram is None else telegram
        use_dc = settings.discord.enabled if discord is None else discord
        if not (use_tg or use_dc):
            raise ConfigError("nothing to serve: pass --telegram and/or --discord")
        if use_tg and settings.telegram.mode == "webhook":
            settings = _with_webhook_secret(settings)
        secrets = _check_tokens(settings, use_tg, use_dc)
        install_redactor(secrets)
        engine = build_engine(settings)  # servers need SOLACE_PSEUDONYM_SECRET
    except SolaceError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        asyncio.run(_main(engine, settings, use_tg, use_dc))
    except Exception as exc:
        message = _rejected(exc)
        if message is None:
            raise
        raise click.ClickException(message) from None
    finally:
        close_backend(engine.backend)  # the llama-server child stops with the bot
        engine.memory.db.close()


def serving_settings(settings: Settings) -> Settings:
    """`model.backend = "auto"` means llama-server when serving (parallel slots, BENCHMARKS.md)."""
    if settings.model.backend != "auto":
        return settings
    model = settings.model.model_copy(update={"backend": SERVE_BACKEND})
    return settings.model_copy(update={"model": model})


def _check_tokens(settings: Settings, telegram: bool, discord: bool) -> list[str]:
    """Validate the tokens of the chosen platforms up front; returns them for the redactor."""
    tokens = []
    if telegram:
        from bot.secrets import telegram_token

        tokens.append(telegram_token(settings))
        if settings.telegram_webhook_secret is not None:
            tokens.append(settings.telegram_webhook_secret.get_secret_value())
    if discord:
        from bot.secrets import discord_token

        tokens.append(discord_token(settings))
    return tokens


def _with_webhook_secret(settings: Settings) -> Settings:
    """The settings with the webhook secret fixed for this run (generated when not set), so the
    log redactor knows it and setWebhook gets the same one."""
    from pydantic import SecretStr

    from bot.secrets import webhook_secret

    secret = SecretStr(webhook_secret(settings))
    return settings.model_copy(update={"telegram_webhook_secret": secret})
