"""Chat adapters: each translates one platform's events into engine calls and back.

`console` (`solace chat`), `telegram` (python-telegram-bot), `discord` (discord.py); what they
share: `commands` (user commands, access rules, the gate), `streaming` (showing a streamed reply
as edited messages) and `ratelimit`. Adapters hold no prompts, no SQL and no safety rules.
"""

from bot.adapters.commands import (
    AccessPolicy,
    CommandReply,
    Gate,
    parse_command,
    run_command,
)
from bot.adapters.discord import build_client
from bot.adapters.ratelimit import RateLimiter
from bot.adapters.streaming import (
    KeyedLocks,
    StreamingReply,
    keep_typing,
    split_text,
    stream_reply,
)
from bot.adapters.telegram import build_application, run_telegram

__all__ = [
    "AccessPolicy",
    "CommandReply",
    "Gate",
    "KeyedLocks",
    "RateLimiter",
    "StreamingReply",
    "build_application",
    "build_client",
    "keep_typing",
    "parse_command",
    "run_command",
    "run_telegram",
    "split_text",
    "stream_reply",
]
