"""Discord adapter (discord.py 2.x): translates gateway messages to engine calls and back.

`build_client(engine, settings)` returns a `discord.Client` (or `AutoShardedClient` when
`discord.sharded`) whose `on_message` answers DMs, and in servers only messages that mention the
bot or reply to it. Intents: guilds, guild messages, DM messages — no privileged intent: Discord
delivers message content in DMs and mentions without `message_content`. Commands work both as
application ("/") commands (`discord_slash.py`, registered by `discord_sync.py`) and typed as
text in DMs and mentions ("/forget yes"). Replies stream by editing at most once per `discord.edit_interval_seconds`,
split at 2,000 characters, with every mention disabled; discord.py honours 429 `retry_after`.
"""

from __future__ import annotations

import io
import logging
import re
import traceback
from typing import TYPE_CHECKING, Any

from bot.adapters import commands as cc
from bot.adapters.discord_slash import build_tree
from bot.adapters.streaming import KeyedLocks, stream_reply
from bot.config import Settings
from bot.messages import IncomingMessage

if TYPE_CHECKING:
    import discord

logger = logging.getLogger(__name__)

PLATFORM = "discord"


def discord_intents() -> discord.Intents:
    """Only what the bot needs: server and DM messages, and the server/channel cache."""
    import discord

    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    return intents


class _ChannelSink:
    """Sends and edits the messages of one streamed reply in one channel."""

    def __init__(self, message: discord.Message) -> None:
        self._message = message
        self._reference = message.guild is not None  # in servers, show what we answer

    async def send(self, text: str) -> Any:
        import discord

        reference = self._message if self._reference else None
        self._reference = False
        return await self._message.channel.send(
            text,
            reference=reference,  # type: ignore[arg-type]
            mention_author=False,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def edit(self, handle: Any, text: str) -> None:
        import discord

        await handle.edit(content=text, allowed_mentions=discord.AllowedMentions.none())


class DiscordHandlers:
    """The message handling, holding the engine and settings (mixed into the client class)."""

    engine: Any
    settings: Settings
    gate: cc.Gate
    order: KeyedLocks
    user: Any  # the bot's own ClientUser, set by discord.py on login

    def _private(self, message: discord.Message) -> bool:
        import discord

        return isinstance(message.channel, discord.DMChannel)

    def _addressed(self, message: discord.Message) -> bool:
        """DMs always; in servers only a mention of the bot or a reply to one of its messages."""
        if self._private(message):
            return True
        if not self.settings.discord.guilds or self.user is None:
            return False
        if any(user.id == self.user.id for user in message.mentions):
            return True
        ref = message.reference
        resolved = getattr(ref, "resolved", None) if ref is not None else None
        author = getattr(resolved, "author", None)
        return author is not None and author.id == self.user.id

    def _clean_text(self, message: discord.Message) -> str:
        if self.user is None:
            return message.content
        return re.sub(rf"<@!?{self.user.id}>", "", message.content).strip()

    async def on_message(self, message: discord.Message) -> None:
        """Answer one message (the boundary: any failure still gets a gentle fallback)."""
        if message.author.bot or not self._addressed(message):
            return
        try:
            await self._handle(message)
        except Exception as exc:  # boundary: log type and stack only, never text
            stack = "".join(traceback.format_tb(exc.__traceback__))
            logger.error("discord handler failed: %s\n%s", type(exc).__name__, stack)
            try:
                await message.channel.send(cc.FALLBACK)
            except Exception as again:
                logger.error("discord fallback failed too: %s", type(again).__name__)

    async def _handle(self, message: discord.Message) -> None:
        uid = str(message.author.id)
        text = self._clean_text(message)
        parsed = cc.parse_command(text, (self.user.name,) if self.user else ())
        refusal = self.gate.refusal(
            PLATFORM, uid, command=parsed[0] if parsed else None, private=self._private(message)
        )
        if refusal is not None:
            if refusal and (self._private(message) or refusal != cc.NOT_ALLOWED):
                await message.channel.send(refusal)
            return
        # One person's replies in the order of their messages (sending runs in the background).
        async with self.order.hold(f"{message.channel.id}:{uid}"):
            if parsed is not None:
                await self._command(message, uid, parsed[0], parsed[1])
            elif text or message.content.strip():  # a bare mention gets the engine's "I'm here"
                await self._stream(message, uid, text)
            else:  # stickers, images, voice messages, files, polls…
                await message.channel.send(cc.NON_TEXT_REPLY)

    async def _command(
        self, message: discord.Message, uid: str, name: str, args: list[str]
    ) -> None:
        import discord

        result = await cc.run_command(
            self.engine,
            name,
            args,
            platform=PLATFORM,
            user_id=uid,
            private=self._private(message),
            admin=self.gate.policy.admin(PLATFORM, uid),
        )
        text = result.text
        if result.confirm_forget:
            text = text.replace(cc.FORGET_TYPED_HINT, "Type /forget yes to confirm.")
        if result.attachment is not None:
            name, data = result.attachment
            await message.channel.send(text, file=discord.File(io.BytesIO(data), filename=name))
        else:
            await message.channel.send(text, allowed_mentions=discord.AllowedMentions.none())

    async def _stream(self, message: discord.Message, uid: str, text: str) -> None:
        ds = self.settings.discord
        channel = None if self._private(message) else str(message.channel.id)
        incoming = IncomingMessage(PLATFORM, uid, text, None, channel)
        shown = await stream_reply(
            self.engine.respond(incoming),
            _ChannelSink(message),
            limit=ds.max_message_chars,
            edit_interval_s=ds.edit_interval_seconds,
            send_typing=lambda: message.channel.typing(),
            typing_interval_s=ds.typing_interval_seconds,
        )
        if not shown:  # nothing visible came back: never go silent
            await message.channel.send(cc.FALLBACK)

    async def setup_hook(self) -> None:
        """After login, before the gateway: sync the slash commands when configured to."""
        if not getattr(self, "sync_on_login", False):
            return
        from bot.adapters.discord_sync import describe, sync_commands

        try:
            for result in await sync_commands(self):
                logger.warning("discord commands %s", describe(result))
        except Exception as exc:  # the bot still serves (text commands, existing registrations)
            logger.error("discord command sync failed: %s", type(exc).__name__)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """discord.py's last-resort hook: log the type and stack only (never message text)."""
        import sys

        _, exc, tb = sys.exc_info()
        logger.error(
            "discord event %s failed: %s\n%s",
            event_method,
            type(exc).__name__,
            "".join(traceback.format_tb(tb)),
        )


def build_client(engine: Any, settings: Settings, gate: cc.Gate | None = None) -> discord.Client:
    """The Discord client (sharded when configured) with Solace's handlers, not started."""
    import discord

    ds = settings.discord
    # Solace never joins voice: skip discord.py's start-up warnings about voice libraries.
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False
    if ds.rest_base_url:
        # discord.py keeps the REST base as a class attribute: one per process, as here.
        discord.http.Route.BASE = ds.rest_base_url.rstrip("/")
    base: type[discord.Client] = discord.AutoShardedClient if ds.sharded else discord.Client

    class SolaceDiscordClient(DiscordHandlers, base):  # type: ignore[valid-type,misc]
        """discord.Client + Solace's handlers."""

    options: dict[str, Any] = {"intents": discord_intents(), "max_messages": None}
    if ds.sharded and ds.shard_count:
        options["shard_count"] = ds.shard_count
    client = SolaceDiscordClient(**options)
    client.engine = engine
    client.settings = settings
    client.gate = gate or cc.Gate(settings.access, log_id=lambda p, u: engine.log_id(p, u))
    client.order = KeyedLocks()
    client.sync_on_login = ds.sync_commands
    client.tree = build_tree(client)  # the "/" commands (bot/adapters/discord_slash.py)
    return client
