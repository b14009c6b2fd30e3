"""What a person's commands do (/reset, /forget, /export, /country, /review, the fixed texts),
and the per-person lock they share with a turn: one thing at a time for each person.

`PersonCommands` is the base of `bot.engine.engine.Engine`, which sets the attributes below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from bot import texts
from bot.config import Settings
from bot.errors import StorageError
from bot.logs import LogIds
from bot.memory import MemoryStore
from bot.memory.erasure import WalCleanup

logger = logging.getLogger("bot.engine.engine")  # the engine's log lines keep their logger

COUNTRY_CODE_RE = re.compile(r"^[A-Za-z]{2}$")


class PersonCommands:
    """The command methods adapters call, beside `Engine.respond`."""

    memory: MemoryStore
    settings: Settings
    _log_ids: LogIds
    _user_locks: dict[str, tuple[asyncio.Lock, list[int]]]
    _wal_cleanup: WalCleanup

    @contextlib.asynccontextmanager
    async def _single_flight(self, key: str) -> AsyncIterator[None]:
        lock, users = self._user_locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                self._user_locks.pop(key, None)

    def log_id(self, platform: str, user_id: str) -> str:
        """The keyed correlation id that log lines carry for this person (bot.logs)."""
        return self._lid(self.memory.pseudonym(platform, user_id))

    def _lid(self, user_key: str) -> str:
        return self._log_ids.of_key(user_key)

    # --- user commands --------------------------------------------------------------------

    async def reset(self, platform: str, user_id: str) -> str:
        """Start a new conversation (history stays for /export); returns the text to show."""
        key = self.memory.pseudonym(platform, user_id)
        async with self._single_flight(key):
            if self.memory.get_user(key) is not None:
                self.memory.new_conversation(key, platform)
        return texts.RESET_DONE

    async def forget(self, platform: str, user_id: str) -> str:
        """Erase everything stored about the user, in every chat (waits for a reply in progress).

        Says what really happened: erased; erased with the WAL clean-up still running (it goes
        on in the background); or not erased because the database stayed busy (try again).
        """
        key = self.memory.pseudonym(platform, user_id)
        async with self._single_flight(key):
            try:
                if self.memory.path is None:  # in-memory: one connection, the loop's
                    erasure = self.memory.forget_user(key)
                else:  # its own connection in a thread: lock waits never block the loop
                    erasure = await asyncio.to_thread(self.memory.forget_user, key)
            except StorageError as exc:
                logger.error("user %s: erasure failed, nothing erased: %s", self._lid(key), exc)
                return texts.FORGET_FAILED
        rows = sum(erasure.deleted.values())
        logger.info("user %s: forgotten (%d rows)", self._lid(key), rows)
        if erasure.wal_clean:
            return texts.FORGET_DONE
        self._wal_cleanup.start()
        return texts.FORGET_IN_PROGRESS

    async def finish_erasures(self) -> bool:
        """Wait for a background WAL clean-up, if any (at shutdown, and in tests); True if clean."""
        return await self._wal_cleanup.wait()

    async def export(self, platform: str, user_id: str) -> dict[str, Any]:
        """Everything stored about the user, as a JSON-ready dict."""
        key = self.memory.pseudonym(platform, user_id)
        async with self._single_flight(key):
            return self.memory.export_user(key)

    async def set_country(self, platform: str, user_id: str, code: str | None) -> str:
        """Set (or with an empty code, clear) the country for crisis resources."""
        code = (code or "").strip()
        if code and not COUNTRY_CODE_RE.match(code):
            return texts.COUNTRY_INVALID
        key = self.memory.pseudonym(platform, user_id)
        async with self._single_flight(key):
            self.memory.set_country(key, platform, code.upper() or None)
        return texts.COUNTRY_SET.format(country=code.upper()) if code else texts.COUNTRY_CLEARED

    async def set_review(self, platform: str, user_id: str, choice: str | None) -> str:
        """`/review on|off`: consent to moderator review (default off); no argument = status."""
        choice = (choice or "").strip().lower()
        key = self.memory.pseudonym(platform, user_id)
        async with self._single_flight(key):
            if choice not in ("on", "off"):
                state = "on" if self.memory.review_consent(key) else "off"
                return texts.REVIEW_STATUS.format(state=state)
            self.memory.set_review_consent(key, platform, choice == "on")
        return texts.REVIEW_ON if choice == "on" else texts.REVIEW_OFF

    def privacy_text(self) -> str:
        """The consent and privacy notice."""
        return texts.notice_text(self.settings.memory.retention_days)

    def help_text(self) -> str:
        """What Solace is and the commands."""
        return texts.HELP_TEXT

    def welcome_text(self) -> str:
        """Greeting plus the notice, for a platform's /start."""
        return texts.welcome_text(self.settings.memory.retention_days)

    async def stats(self) -> dict[str, int]:
        """Counts only: users, turns, flagged turns, events by kind, users replying now."""
        return {**self.memory.stats(), "active_users": len(self._user_locks)}
