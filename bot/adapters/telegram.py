"""Telegram adapter (python-telegram-bot 22): translates updates to engine calls and back.

`build_application(engine, settings)` returns an unstarted `telegram.ext.Application`;
`run_telegram(app)` runs it on the current event loop (next to Discord in `solace serve`), by
long polling or, with `telegram.mode = "webhook"`, by PTB's webhook server (`bot.adapters.webhook`).
Replies are plain text (no parse mode), streamed by editing one message at most once per
`telegram.edit_interval_seconds`, split at 4,096 UTF-16 units; 429s are retried after
`retry_after` by PTB's `AIORateLimiter`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import traceback
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from bot.adapters import commands as cc
from bot.adapters.streaming import KeyedLocks, stream_reply
from bot.config import Settings
from bot.errors import ConfigError
from bot.messages import IncomingMessage
from bot.secrets import telegram_token

if TYPE_CHECKING:
    from telegram import Message, Update
    from telegram.ext import Application, ContextTypes

    Context = ContextTypes.DEFAULT_TYPE

logger = logging.getLogger(__name__)

PLATFORM = "telegram"
COMMANDS = ("start", "help", "reset", "forget", "export", "privacy", "country", "review", "stats")
MENU = (
    ("start", "What Solace is, and how your data is handled"),
    ("help", "What I can do"),
    ("reset", "Start a fresh conversation"),
    ("forget", "Erase everything stored about you"),
    ("export", "Get a copy of your stored data"),
    ("privacy", "What is stored and for how long"),
    ("country", "Your country for local support services, e.g. /country GB"),
    ("review", "Let moderators review our chats: /review on or off"),
)
FORGET_YES, FORGET_NO = "forget:yes", "forget:no"
# The update types Solace handles (edits are deliberately not answered): asked for in getUpdates
# and setWebhook, so Telegram sends nothing else.
ALLOWED_UPDATES = ["message", "callback_query"]


class _ChatSink:
    """Sends and edits the messages of one streamed reply in one chat."""

    def __init__(self, message: Message) -> None:
        self._message = message
        self._quote = message.chat.type != "private"  # in groups, show what we answer

    async def send(self, text: str) -> Any:
        from telegram import ReplyParameters

        reply = None
        if self._quote:
            reply = ReplyParameters(self._message.message_id, allow_sending_without_reply=True)
            self._quote = False
        sent = await self._message.get_bot().send_message(
            self._message.chat_id,
            text,
            reply_parameters=reply,
            message_thread_id=self._message.message_thread_id
            if self._message.is_topic_message
            else None,
        )
        return sent.message_id

    async def edit(self, handle: Any, text: str) -> None:
        from telegram.error import BadRequest

        try:
            await self._message.get_bot().edit_message_text(
                text, chat_id=self._message.chat_id, message_id=handle
            )
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():  # harmless: same text after trimming
                raise


class TelegramHandlers:
    """The handlers, holding the engine and settings (no globals)."""

    def __init__(self, engine: Any, settings: Settings, gate: cc.Gate | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.gate = gate or cc.Gate(settings.access, log_id=lambda p, u: engine.log_id(p, u))
        self.order = KeyedLocks()  # one person's replies in the order of their messages

    async def check_access(self, update: Update, context: Context) -> None:
        """Stop updates from blocked or not-allowed users before any other handler (their
        /forget and /export in a private chat, and the /forget button, still go through)."""
        from telegram.ext import ApplicationHandlerStop

        user = update.effective_user
        if user is None or user.is_bot:
            raise ApplicationHandlerStop
        chat = update.effective_chat
        private = chat is not None and chat.type == "private"
        command = self._command_name(update, context)
        refusal = self.gate.access(PLATFORM, str(user.id), command=command, private=private)
        if refusal is None:
            return
        if refusal and private and update.message:
            await update.message.reply_text(refusal)
        raise ApplicationHandlerStop

    @staticmethod
    def _command_name(update: Update, context: Context) -> str | None:
        """The command an update carries: "/export" → "export", the /forget button → "forget"."""
        query = update.callback_query
        if query is not None:
            return "forget" if (query.data or "").startswith("forget:") else None
        message = update.message
        if message is None or not message.text:
            return None
        parsed = cc.parse_command(message.text, (context.bot.username,))
        return parsed[0] if parsed else None

    def _addressed(self, message: Message) -> bool:
        """Private chats always; in groups only a mention of the bot or a reply to it."""
        if message.chat.type == "private":
            return True
        if not self.settings.telegram.groups:
            return False
        bot = message.get_bot()
        reply = message.reply_to_message
        if reply is not None and reply.from_user is not None and reply.from_user.id == bot.id:
            return True
        mention = f"@{bot.username}".lower()
        entities = message.parse_entities(["mention"]) or message.parse_caption_entities(
            ["mention"]
        )
        return any(value.lower() == mention for value in entities.values())

    def _rate_refusal(self, update: Update, command: str | None = None) -> str | None:
        user = update.effective_user
        if user is None:  # check_access already stops these
            return ""
        return self.gate.rate(PLATFORM, str(user.id), command=command)

    async def _refused(self, update: Update, message: Message) -> bool:
        """True when the rate limit refuses this message (the kind notice is sent once)."""
        refusal = self._rate_refusal(update)
        if refusal:
            await message.reply_text(refusal)
        return refusal is not None

    async def on_text(self, update: Update, context: Context) -> None:
        """Answer a text message with the engine's streamed reply."""
        message, user = update.message, update.effective_user
        if message is None or user is None or not message.text or not self._addressed(message):
            return
        if await self._refused(update, message):
            return
        text = message.text
        if message.chat.type != "private":
            text = re.sub(rf"@{re.escape(context.bot.username)}\b", "", text, flags=re.I).strip()
        group = None if message.chat.type == "private" else str(message.chat_id)
        incoming = IncomingMessage(PLATFORM, str(user.id), text, user.language_code, group)
        async with self.order.hold(f"{message.chat_id}:{user.id}"):
            await self._stream(message, incoming)

    async def _stream(self, message: Message, incoming: IncomingMessage) -> None:
        from telegram.constants import ChatAction

        tg = self.settings.telegram
        bot = message.get_bot()
        shown = await stream_reply(
            self.engine.respond(incoming),
            _ChatSink(message),
            limit=tg.max_message_chars,
            edit_interval_s=tg.edit_interval_seconds,
            send_typing=lambda: bot.send_chat_action(message.chat_id, ChatAction.TYPING),
            typing_interval_s=tg.typing_interval_seconds,
        )
        if not shown:  # the engine yielded nothing visible: never leave a person unanswered
            await message.reply_text(cc.FALLBACK)

    async def on_non_text(self, update: Update, context: Context) -> None:
        """Kindly say that only text can be read (stickers, photos, voice, files…)."""
        message = update.message
        if message is None or not self._addressed(message):
            return
        if await self._refused(update, message):
            return
        await message.reply_text(cc.NON_TEXT_REPLY)

    async def on_command(self, update: Update, context: Context) -> None:
        """Run /start, /help, /reset, /forget, /export, /privacy, /country or /stats."""
        message, user = update.message, update.effective_user
        if message is None or user is None or not message.text:
            return
        parsed = cc.parse_command(message.text, (context.bot.username,))
        if parsed is None:
            return
        uid = str(user.id)
        refusal = self._rate_refusal(update, parsed[0])
        if refusal is not None:
            if refusal:
                await message.reply_text(refusal)
            return
        async with self.order.hold(f"{message.chat_id}:{uid}"):
            result = await cc.run_command(
                self.engine,
                parsed[0],
                parsed[1],
                platform=PLATFORM,
                user_id=uid,
                private=message.chat.type == "private",
                admin=self.gate.policy.admin(PLATFORM, uid),
            )
            await self._show(message, result)

    async def _show(self, message: Message, result: cc.CommandReply) -> None:
        from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputFile

        if result.attachment is not None:
            name, data = result.attachment
            await message.reply_document(InputFile(data, filename=name), caption=result.text)
        elif result.confirm_forget:
            buttons = [
                InlineKeyboardButton(cc.FORGET_BUTTON_YES, callback_data=FORGET_YES),
                InlineKeyboardButton(cc.FORGET_BUTTON_NO, callback_data=FORGET_NO),
            ]
            await message.reply_text(result.text, reply_markup=InlineKeyboardMarkup([buttons]))
        else:
            await message.reply_text(result.text)

    async def on_forget_button(self, update: Update, context: Context) -> None:
        """Erase (or not) after the /forget confirmation button."""
        query, user = update.callback_query, update.effective_user
        if query is None or user is None or query.message is None:
            return
        await query.answer()
        if query.message.chat.type != "private":
            return
        if query.data == FORGET_YES:
            text = await cc.confirm_forget(self.engine, PLATFORM, str(user.id))
        else:
            text = cc.FORGET_CANCELLED
        await query.edit_message_text(text)

    async def on_error(self, update: object, context: Context) -> None:
        """Log the failure (type and stack only, never text) and send a gentle fallback."""
        error = context.error
        stack = "".join(traceback.format_tb(error.__traceback__)) if error else ""
        logger.error("telegram handler failed: %s\n%s", type(error).__name__, stack)
        from telegram import Update as TgUpdate

        if isinstance(update, TgUpdate) and update.effective_chat is not None:
            with contextlib.suppress(Exception):  # nothing more we can do if this fails too
                await context.bot.send_message(update.effective_chat.id, cc.FALLBACK)


def build_application(engine: Any, settings: Settings, gate: cc.Gate | None = None) -> Application:
    """Build the PTB Application with every handler registered (not started)."""
    from telegram import BotCommand, Update
    from telegram.ext import (
        AIORateLimiter,
        ApplicationBuilder,
        CallbackQueryHandler,
        CommandHandler,
        MessageHandler,
        TypeHandler,
        filters,
    )

    tg = settings.telegram
    handlers = TelegramHandlers(engine, settings, gate)
    updates: Any = tg.concurrent_updates
    if tg.mode == "webhook":  # claim each update in SQLite first (several processes, one URL)
        from bot.adapters.webhook import build_update_processor

        updates = build_update_processor(engine, settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines carry the token URL

    async def post_init(app: Application) -> None:
        await app.bot.set_my_commands([BotCommand(name, text) for name, text in MENU])

    app = (
        ApplicationBuilder()
        .token(telegram_token(settings))
        .base_url(tg.base_url)
        .base_file_url(tg.base_file_url)
        .rate_limiter(
            AIORateLimiter(
                overall_max_rate=tg.overall_max_rate,
                group_max_rate=tg.group_max_rate,
                max_retries=tg.flood_retries,
            )
        )
        .concurrent_updates(updates)
        .get_updates_read_timeout(tg.poll_timeout_seconds + 10)
        # A second connection for the final getUpdates that confirms the last offset at
        # shutdown: with one, a cancelled long poll can still hold it (PoolTimeout) and
        # Telegram re-delivers those updates after a restart — duplicate replies.
        .get_updates_connection_pool_size(2)
        .post_init(post_init)
        .build()
    )
    new = filters.UpdateType.MESSAGE  # edits are never answered twice
    app.add_handler(TypeHandler(Update, handlers.check_access), group=-1)
    app.add_handler(CommandHandler(list(COMMANDS), handlers.on_command, filters=new))
    # Unknown commands get the help list, but only in private chats: in a group they are
    # probably meant for another bot.
    private = filters.ChatType.PRIVATE
    app.add_handler(MessageHandler(new & private & filters.COMMAND, handlers.on_command))
    app.add_handler(MessageHandler(new & filters.TEXT & ~filters.COMMAND, handlers.on_text))
    app.add_handler(
        MessageHandler(new & ~filters.TEXT & ~filters.StatusUpdate.ALL, handlers.on_non_text)
    )
    app.add_handler(CallbackQueryHandler(handlers.on_forget_button, pattern=r"^forget:(yes|no)$"))
    app.add_error_handler(handlers.on_error)
    return app


@contextlib.asynccontextmanager
async def run_telegram(app: Application, settings: Settings) -> AsyncIterator[Application]:
    """Start polling or the webhook on the running loop; stop cleanly when the block exits
    (in webhook mode: deleteWebhook, then the server; updates already received are answered)."""
    webhook = settings.telegram.mode == "webhook"
    async with app:
        await app.start()
        if app.updater is None:
            raise ConfigError("the Telegram application was built without an updater")
        from bot.adapters.webhook import start_webhook, stop_webhook

        try:
            if webhook:
                await start_webhook(app, settings, ALLOWED_UPDATES)
            else:
                await app.updater.start_polling(
                    timeout=settings.telegram.poll_timeout_seconds,
                    allowed_updates=ALLOWED_UPDATES,
                )
        except BaseException:
            await app.stop()  # else leaving `async with app` hides the error behind another
            raise
        try:
            yield app
        finally:
            if webhook:
                await stop_webhook(app, settings)
            else:
                await app.updater.stop()
            await app.stop()
