"""What the Telegram and Discord adapters share: access rules, rate limit, and user commands.

Each adapter turns a platform event into a call here and renders the `CommandReply` its own way
(an inline button or a file upload on Telegram, a message and attachment on Discord), so both
platforms behave the same and neither holds engine logic.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from bot import texts
from bot.config import AccessSettings
from bot.ratelimit import RateLimiter

logger = logging.getLogger(__name__)

EXPORT_FILE_NAME = "solace-export.json"
# Commands that touch a person's stored data only run in a private chat, never in a group.
PRIVATE_COMMANDS = frozenset({"reset", "forget", "export", "country", "stats", "review"})
KNOWN_COMMANDS = frozenset(
    {"start", "help", "privacy", "reset", "forget", "export", "country", "review"}
)
CONFIRM_WORDS = frozenset({"yes", "y", "confirm"})

NON_TEXT_REPLY = (
    "Thank you for sending that. I can only read text for now - could you tell me in words "
    "what's on your mind?"
)
RATE_LIMITED = (
    "I want to give each of your messages proper attention, and they're arriving faster than "
    "I can. Let's slow down a little - I'll be ready again in about {seconds} seconds."
)
NOT_ALLOWED = "I'm sorry - this Solace instance is private and I can't talk with you here."
PRIVATE_ONLY = (
    "That one touches your personal data, so let's do it in a private chat with me, not here."
)
FORGET_CONFIRM = (
    "This erases everything stored about you - every message and reply - for good. "
    "Are you sure? (You can also type /forget yes.)"
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


def hashed_id(platform: str, user_id: str) -> str:
    """A short non-reversible id for logs (never log raw platform ids or text)."""
    return hashlib.sha256(f"{platform}:{user_id}".encode()).hexdigest()[:12]


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
    """Access rules plus the per-user rate limit, checked before a message reaches the engine."""

    def __init__(self, access: AccessSettings, limiter: RateLimiter | None = None) -> None:
        self.policy = AccessPolicy(access)
        self.limiter = limiter or RateLimiter(access.messages_per_minute)

    def refusal(self, platform: str, user_id: str, *, counts: bool) -> str | None:
        """None to go on; "" to drop silently; otherwise the kind text to answer with.

        Args:
            counts: the message goes to the model (or gets a reply), so it counts against the
                rate limit. Commands do not count, so /forget always works.
        """
        if self.policy.blocked(platform, user_id):
            logger.info("blocked user %s ignored", hashed_id(platform, user_id))
            return ""
        if not self.policy.allowed(platform, user_id):
            return NOT_ALLOWED
        if not counts:
            return None
        decision = self.limiter.check(f"{platform}:{user_id}")
        if decision.allowed:
            return None
        logger.info("rate limit hit by %s", hashed_id(platform, user_id))
        if not decision.notify:
            return ""
        return RATE_LIMITED.format(seconds=max(1, round(decision.retry_after_s)))


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
