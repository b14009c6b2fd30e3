"""Post the moderator report to a moderator Telegram chat and/or Discord channel.

The message is the counts-only summary; the HTML file is attached (`sendDocument` on Telegram,
a file upload on Discord) unless `jobs.report_post_html` is off. The bot's own tokens are used
(SOLACE_TELEGRAM_TOKEN / SOLACE_DISCORD_TOKEN) with the adapters' API base URLs. A failed post
raises: the report file is already written, and the job's retry posts again.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from bot.config import Settings

logger = logging.getLogger(__name__)

TELEGRAM_CAPTION_CHARS = 1024
DISCORD_CONTENT_CHARS = 2000


async def post_telegram(settings: Settings, chat_id: str, text: str, html: Path | None) -> None:
    """Send the summary (as the caption of the HTML document when attached)."""
    from telegram import Bot, InputFile

    from bot.secrets import telegram_token

    tg = settings.telegram
    bot = Bot(telegram_token(settings), base_url=tg.base_url, base_file_url=tg.base_file_url)
    async with bot:
        if html is None:
            await bot.send_message(chat_id, text)
        else:
            document = InputFile(html.read_bytes(), filename=html.name)
            await bot.send_document(chat_id, document, caption=text[:TELEGRAM_CAPTION_CHARS])


async def post_discord(settings: Settings, channel_id: str, text: str, html: Path | None) -> None:
    """Post the summary (and the HTML file) to a channel through Discord's REST API only."""
    import discord

    from bot.secrets import discord_token

    if settings.discord.rest_base_url:
        discord.http.Route.BASE = settings.discord.rest_base_url.rstrip("/")
    client = discord.Client(intents=discord.Intents.none())
    try:
        await client.login(discord_token(settings))
        channel = client.get_partial_messageable(int(channel_id))  # no gateway, no fetch
        files = [discord.File(io.BytesIO(html.read_bytes()), filename=html.name)] if html else []
        await channel.send(
            text[:DISCORD_CONTENT_CHARS],
            files=files,
            allowed_mentions=discord.AllowedMentions.none(),
        )
    finally:
        await client.close()


async def post_report(settings: Settings, text: str, html: Path) -> list[str]:
    """Post to every configured moderator destination; returns where it went."""
    j = settings.jobs
    attachment = html if j.report_post_html else None
    posted = []
    if j.report_telegram_chat_id:
        await post_telegram(settings, j.report_telegram_chat_id, text, attachment)
        posted.append("telegram")
    if j.report_discord_channel_id:
        await post_discord(settings, j.report_discord_channel_id, text, attachment)
        posted.append("discord")
    if posted:
        logger.info("report posted to %s (%d chars summary)", ", ".join(posted), len(text))
    return posted
