"""What the Telegram and Discord adapters share: access rules, rate limit, and user commands.

Each adapter turns a platform event into a call here and renders the `CommandReply` its own way
(an inline button or a file upload on Telegram, a message and attachment on Discord), so both
platforms behave the same and neither holds engine logic.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot import texts
from bot.adapters.ratelimit import RateLimiter
from bot.config import AccessSettings

logger = logging.getLogger(__name__)

EXPORT_FILE_NAME = "solace-export.json"
# Commands that touch a person's stored data only run in a private chat, never in a group.
PRIVATE_COMMANDS = frozenset({"reset", "forget", "export", "country", "stats", "review"})
KNOWN_COMMANDS = frozenset(
    {"start", "help", "privacy", "reset", "forget", "export", "country", "review"}
)
CONFIRM_WORDS = frozenset({"yes", "y", "confirm"})
# A person's data rights: reachable in a private chat even for blocked or not-allowed people.
DATA_RIGHTS_COMMANDS = frozenset({"forget", "export"})
SECONDS_PER_HOUR = 3600.0

NON_TEXT_REPLY = (
    "Thank you for sending that. I can only read text for now - could you tell me in words "
    "what's on your mind?"
)
RATE_LIMITED = (
    "I want to give each of your messages proper attention, and they're arriving faster than "
    "I can. Let's slow down a little - I'll be ready again in about {seconds} seconds."
)
COMMAND_RATE_LIMITED = (
    "You've sent quite a few commands in a short while. Let's pause for a moment - you can "
    "try again in about {seconds} seconds. (/forget always works.)"
)
EXPORT_RATE_LIMITED = (
    "I've made several copies of your data for you recently, so I'll wait a little before the "
    "next one - about {minutes} minutes. (/forget always works.)"
)
NOT_ALLOWED = "I'm sorry - this Solace instance is private and I can't talk with you here."
PRIVATE_ONLY = (
    "That one touches your personal data, so let's do it in a private chat with me, not here."
)
FORGET_TYPED_HINT = "(You can also type /forget yes.)"  # adapters without buttons replace it
FORGET_CONFIRM = (
    "This erases everything stored about you - every message and reply - for good. "
    "Are you sure? " + FORGET_TYPED_HINT
)
FORGET_BUTTON_YES = "Yes, erase everything"
FORGET_BUTTON_NO = "No, keep it"
FORGET_CANCELLED = "Okay - nothing was erased."
EXPORT_CAPTION = "Here is everything stored about you, as a JSON file."
NOT_ADMIN = "Sorry - that command is for the people who run this bot."
FALLBACK = (
    "I'm sorry - something went wrong on my side. I'm still here; please send that again in a "
    "moment."
)


class CommandEngine(Protocol):
    """The engine's user-command surface (see docs/architecture.md)."""

    async def reset(self, platform: str, user_id: str) -> Any: ...
    async def forget(self, platform: str, user_id: str) -> Any: ...
    async def export(self, platform: str, user_id: str) -> dict[str, Any]: ...
    async def set_country(self, platform: str, user_id: str, code: str | None) -> Any: ...
    async def set_review(self, platform: str, user_id: str, choice: str | None) -> str: ...
    def privacy_text(self) -> str: ...
    def help_text(self) -> str: ...
    def welcome_text(self) -> str: ...
    async def stats(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class CommandReply:
    """What to show for a command.

    Args:
        text: the message (or the caption of an attachment).
        attachment: (file name, bytes) to upload, e.g. the /export JSON.
        confirm_forget: show "yes / no" buttons (or ask for "/forget yes" where there are none).
    """

    text: str
    attachment: tuple[str, bytes] | None = None
    confirm_forget: bool = False


class AccessPolicy:
    """Allow-list, block-list and admins from `settings.access`."""

    def __init__(self, settings: AccessSettings) -> None:
        self._settings = settings

    @staticmethod
    def _listed(ids: tuple[str, ...], platform: str, user_id: str) -> bool:
        return user_id in ids or f"{platform}:{user_id}" in ids

    def blocked(self, platform: str, user_id: str) -> bool:
        """True for a blocked user (ignored silently, nothing stored)."""
        return self._listed(self._settings.block_user_ids, platform, user_id)

    def allowed(self, platform: str, user_id: str) -> bool:
        """True when the allow-list is off or lists this user (and the user is not blocked)."""
        if self.blocked(platform, user_id):
            return False
        if not self._settings.enabled:
            return True
        return self._listed(self._settings.allow_user_ids, platform, user_id)

    def admin(self, platform: str, user_id: str) -> bool:
        """True for an operator allowed to run /stats."""
        return self._listed(self._settings.admin_user_ids, platform, user_id)


class Gate:
    """Access rules and rate limits, checked before anything reaches the engine.

    Three limits per person: messages per minute, commands per minute (every command but
    /forget, which must always work), and /export files per hour. Blocked and not-allowed
    people get nothing - except their data rights: /forget and /export in a private chat.

    Args:
        log_id: the keyed correlation id for log lines (`Engine.log_id`); raw ids are never
            logged, and an unkeyed hash of a platform id is reversible by enumeration.
    """

    def __init__(
        self,
        access: AccessSettings,
        *,
        log_id: Callable[[str, str], str],
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = AccessPolicy(access)
        self.limiter = limiter or RateLimiter(access.messages_per_minute, clock)
        self.command_limiter = RateLimiter(access.commands_per_minute, clock)
        self.export_limiter = RateLimiter(
            access.exports_per_hour, clock, window_seconds=SECONDS_PER_HOUR
        )
        self._log_id = log_id

    def access(
        self, platform: str, user_id: str, *, command: str | None = None, private: bool = True
    ) -> str | None:
        """Access rules only: None to go on; "" to drop silently; else the text to answer."""
        if self.policy.allowed(platform, user_id):
            return None
        if command in DATA_RIGHTS_COMMANDS and private:
            return None  # erasure and a copy of one's data stay reachable for everyone
        if self.policy.blocked(platform, user_id):
            logger.info("blocked user %s ignored", self._log_id(platform, user_id))
            return ""
        return NOT_ALLOWED

    def rate(self, platform: str, user_id: str, *, command: str | None = None) -> str | None:
        """Rate limits only: None to go on; "" to drop silently; else the kind text.

        Args:
            command: the command's name, or None for a message (text or not) to the engine.
        """
        if command == "forget":
            return None  # never limited: a person must always be able to erase their data
        key = f"{platform}:{user_id}"
        if command is None:
            checks = [(self.limiter, RATE_LIMITED)]
        else:
            checks = [(self.command_limiter, COMMAND_RATE_LIMITED)]
            if command == "export":
                checks.append((self.export_limiter, EXPORT_RATE_LIMITED))
        for limiter, text in checks:
            decision = limiter.check(key)
            if decision.allowed:
                continue
            logger.info(
                "rate limit (%s) hit by %s", command or "messages", self._log_id(platform, user_id)
            )
            if not decision.notify:
                return ""
            seconds = max(1, round(decision.retry_after_s))
            return text.format(seconds=seconds, minutes=max(1, round(seconds / 60)))
        return None

    def refusal(
        self, platform: str, user_id: str, *, command: str | None = None, private: bool = True
    ) -> str | None:
        """`access`, then `rate`: None to go on; "" to drop silently; else the text to answer."""
        refused = self.access(platform, user_id, command=command, private=private)
        if refused is not None:
            return refused
        return self.rate(platform, user_id, command=command)


def parse_command(text: str, bot_names: tuple[str, ...] = ()) -> tuple[str, list[str]] | None:
    """Split "/name@bot arg1 arg2" into ("name", ["arg1", "arg2"]); None if not a command.

    A command addressed to another bot ("/help@otherbot") is not ours and gives None.
    """
    stripped = text.strip()
    if not stripped.startswith("/") or not stripped[1:2].isalpha():
        return None  # "/", "/ 3am thoughts" or "/:(" is a message, not a command
    head, *args = stripped.split()
    name, _, target = head[1:].partition("@")
    if target and target.lower() not in {n.lower() for n in bot_names}:
        return None
    return name.lower(), args


def export_bytes(data: dict[str, Any]) -> bytes:
    """The /export file: readable, UTF-8 JSON of exactly what the engine returned."""
    return json.dumps(data, ensure_ascii=False, indent=2, default=str).encode("utf-8")


def _text_or(result: Any, default: str) -> str:
    """Engine commands may return their own confirmation text; otherwise use `default`."""
    return result if isinstance(result, str) and result.strip() else default


async def run_command(
    engine: CommandEngine,
    name: str,
    args: list[str],
    *,
    platform: str,
    user_id: str,
    private: bool,
    admin: bool,
) -> CommandReply:
    """Run one user command and say what to show. Unknown commands get the help text."""
    if name in PRIVATE_COMMANDS and not private:
        return CommandReply(PRIVATE_ONLY)
    if name == "start":
        return CommandReply(engine.welcome_text())
    if name == "help":
        return CommandReply(engine.help_text())
    if name == "privacy":
        return CommandReply(engine.privacy_text())
    if name == "reset":
        return CommandReply(_text_or(await engine.reset(platform, user_id), texts.RESET_DONE))
    if name == "forget":
        if args and args[0].lower() in CONFIRM_WORDS:
            return CommandReply(_text_or(await engine.forget(platform, user_id), texts.FORGET_DONE))
        return CommandReply(FORGET_CONFIRM, confirm_forget=True)
    if name == "export":
        data = await engine.export(platform, user_id)
        return CommandReply(EXPORT_CAPTION, attachment=(EXPORT_FILE_NAME, export_bytes(data)))
    if name == "country":
        code = args[0] if args else None
        return CommandReply(
            _text_or(await engine.set_country(platform, user_id, code), texts.COUNTRY_INVALID)
        )
    if name == "review":
        return CommandReply(await engine.set_review(platform, user_id, args[0] if args else None))
    if name == "stats":
        if not admin:
            return CommandReply(NOT_ADMIN)
        counts = await engine.stats()
        return CommandReply("\n".join(f"{key}: {value}" for key, value in sorted(counts.items())))
    return CommandReply(texts.UNKNOWN_COMMAND)


async def confirm_forget(engine: CommandEngine, platform: str, user_id: str) -> str:
    """Erase a user's data after they confirmed; returns the text to show."""
    return _text_or(await engine.forget(platform, user_id), texts.FORGET_DONE)
