"""Telegram webhook mode: python-telegram-bot's own webhook server on the bot's event loop.

`Updater.start_webhook` runs PTB's tornado server at `telegram.webhook_listen:webhook_port`
`webhook_path` (plain HTTP: TLS is the reverse proxy's job) and calls setWebhook with
`telegram.webhook_url`, the allowed update types, `drop_pending_updates` and the secret token.
PTB's handler answers 403 to a request without the `X-Telegram-Bot-Api-Secret-Token` header, with
a wrong one, or with a Content-Type other than application/json, before reading the update; with
the right secret, a body that is not JSON gets 500 and one that is not an update 400 (nothing
queued). `solace serve` calls deleteWebhook when it stops (`telegram.webhook_delete_on_stop`).

Every update goes through `build_update_processor`'s processor, which claims its update_id in
SQLite before any handler runs (`bot.memory.updates`): of several processes behind one URL,
exactly one answers it, and one person's updates are answered in order across them. An update
longer than Telegram allows (a 10 MB text) cannot come from Telegram: it is dropped unanswered.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.errors import ConfigError, StorageError
from bot.memory.updates import UpdateClaims
from bot.secrets import webhook_secret

if TYPE_CHECKING:
    from telegram.ext import Application, BaseUpdateProcessor

logger = logging.getLogger(__name__)

PLATFORM = "telegram"
MAX_TEXT_UNITS = 4096  # Telegram's limit for a message's text (UTF-16 code units)
MAX_CAPTION_UNITS = 1024
PTB_WEBHOOK_LOGGER = "telegram.ext.Updater"
# PTB's webhook log lines whose arguments are a request's body or the secret it carried.
_WITHHELD = ("Webhook received data", "Received data was", "wrong secret token")


class WithholdBodies(logging.Filter):
    """Blanks the update bodies and presented secrets PTB's webhook handler puts in its logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        if record.args and any(marker in str(record.msg) for marker in _WITHHELD):
            count = len(record.args) if isinstance(record.args, tuple) else 1
            record.args = ("[withheld]",) * count
        return True


def _units(text: str | None) -> int:
    return len(text.encode("utf-16-le")) // 2 if text else 0


def oversized(update: Any) -> bool:
    """True when a message is longer than Telegram lets anyone send (so not from Telegram)."""
    message = getattr(update, "effective_message", None)
    if message is None:
        return False
    return _units(message.text) > MAX_TEXT_UNITS or _units(message.caption) > MAX_CAPTION_UNITS


def build_update_processor(engine: Any, settings: Settings) -> BaseUpdateProcessor:
    """PTB's update processor for webhook mode: claim, order, handle, finish (see module doc)."""
    from telegram import Update
    from telegram.ext import BaseUpdateProcessor

    claims = UpdateClaims(
        engine.memory.db.conn, lease_s=settings.telegram.webhook_order_wait_seconds
    )

    class ClaimingUpdateProcessor(BaseUpdateProcessor):
        """Handles an update only when this process claimed it first."""

        def __init__(self, max_concurrent_updates: int) -> None:
            super().__init__(max_concurrent_updates)
            self.claims = claims

        async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
            """Claim `update`, wait for the sender's earlier updates elsewhere, then handle it."""
            if not isinstance(update, Update):
                await coroutine
                return
            if oversized(update):
                logger.warning(
                    "telegram: update %d is longer than Telegram allows; dropped", update.update_id
                )
                _discard(coroutine)
                return
            user = update.effective_user
            user_key = engine.memory.pseudonym(PLATFORM, str(user.id)) if user else None
            try:
                claimed = claims.claim(update.update_id, user_key)
            except StorageError as exc:  # answer twice rather than not at all
                logger.warning(
                    "telegram: could not claim update %d (%s); handling it",
                    update.update_id,
                    type(exc).__name__,
                )
                await coroutine
                return
            if not claimed:
                logger.info("telegram: update %d was claimed by another process", update.update_id)
                _discard(coroutine)
                return
            try:
                if user_key is not None and not await claims.wait_turn(update.update_id, user_key):
                    logger.warning(
                        "telegram: gave up waiting for an earlier update of %s",
                        engine.log_id(PLATFORM, str(user.id)) if user else "-",
                    )
                await coroutine
            finally:
                with contextlib.suppress(StorageError):  # the claim ages out after a day
                    claims.done(update.update_id)

        async def initialize(self) -> None:
            """Nothing to set up: the claims live in the memory database."""

        async def shutdown(self) -> None:
            """Nothing to release."""

    return ClaimingUpdateProcessor(settings.telegram.concurrent_updates)


def _discard(coroutine: Awaitable[Any]) -> None:
    close = getattr(coroutine, "close", None)
    if close is not None:  # a coroutine never awaited would warn
        close()


async def start_webhook(app: Application, settings: Settings, allowed: list[str]) -> str:
    """Start PTB's webhook server and set the webhook; returns the public URL."""
    tg = settings.telegram
    if app.updater is None:
        raise ConfigError("the Telegram application was built without an updater")
    if tg.webhook_url is None:
        raise ConfigError("telegram.mode = 'webhook' needs telegram.webhook_url")
    webhook_logger = logging.getLogger(PTB_WEBHOOK_LOGGER)
    if not any(isinstance(f, WithholdBodies) for f in webhook_logger.filters):
        webhook_logger.addFilter(WithholdBodies())
    try:
        await app.updater.start_webhook(
            listen=tg.webhook_listen,
            port=tg.webhook_port,
            url_path=tg.webhook_path,
            webhook_url=tg.webhook_url,
            allowed_updates=allowed,
            drop_pending_updates=tg.drop_pending_updates,
            max_connections=tg.webhook_max_connections,
            secret_token=webhook_secret(settings),
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {tg.webhook_listen}:{tg.webhook_port} for the Telegram webhook: "
            f"{exc.strerror or type(exc).__name__} (telegram.webhook_listen / webhook_port)"
        ) from None
    return tg.webhook_url


async def stop_webhook(app: Application, settings: Settings) -> None:
    """deleteWebhook (when configured; Telegram keeps new updates meanwhile), stop the server."""
    from telegram.error import TelegramError

    if settings.telegram.webhook_delete_on_stop:
        try:
            await app.bot.delete_webhook(drop_pending_updates=False)
        except TelegramError as exc:
            logger.warning("telegram: deleteWebhook failed at stop (%s)", type(exc).__name__)
    if app.updater is not None:
        await app.updater.stop()
