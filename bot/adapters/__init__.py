"""Chat adapters: each translates one platform's events into engine calls and back.

`console` (`solace chat`), `telegram` (python-telegram-bot), `discord` (discord.py); what they
share: `commands` (user commands, access rules, the gate), `streaming` (showing a streamed reply
as edited messages) and `ratelimit`. Adapters hold no prompts, no SQL and no safety rules.
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from bot.adapters.commands import (
        AccessPolicy as AccessPolicy,
        CommandReply as CommandReply,
        Gate as Gate,
        parse_command as parse_command,
        run_command as run_command,
    )
    from bot.adapters.discord import build_client as build_client
    from bot.adapters.ratelimit import RateLimiter as RateLimiter
    from bot.adapters.streaming import (
        KeyedLocks as KeyedLocks,
        StreamingReply as StreamingReply,
        keep_typing as keep_typing,
        split_text as split_text,
        stream_reply as stream_reply,
    )
    from bot.adapters.telegram import (
        build_application as build_application,
        run_telegram as run_telegram,
    )

__getattr__, __dir__ = lazy_exports(__name__)
