"""The platform-neutral conversation engine: one turn, in order, for one person at a time.

`Engine.respond(msg)` yields reply text deltas:
consent notice on first contact → safety screen (crisis: fixed reply, no model) → store the user
turn (committed before generation, so a crash loses nothing the person said) → build the context
→ stream from the backend, releasing only text the guard has checked → store the reply.
A second message from the same person waits for the first; different people run independently.
The engine never raises a model failure into an adapter: it yields a kind message instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

from bot import texts
from bot.backends import Backend, gen_options, reply_threads, stream_in_thread, warm_up_backend
from bot.config import Settings
from bot.engine.commands import PersonCommands
from bot.engine.release import Reply, guarded_release
from bot.engine.risk import RiskTracker
from bot.errors import BackendError, StorageError
from bot.input_text import clean_text, truncate_for_storage
from bot.logs import LOG_KEY_LABEL, LogIds
from bot.memory import MemoryStore
from bot.memory.erasure import WalCleanup
from bot.messages import IncomingMessage
from bot.safety.protocols import SafetyProtocol, ScreenLike
from dialogue.prompts import SYSTEM_PROMPT, Message, build_messages
from dialogue.window import BuiltContext, build_context, compressed_form

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Where:
    """Whose conversation, in which chat: the pseudonym and the group scope (None = private)."""

    key: str
    scope: str | None


class Engine(PersonCommands):
    """One engine per process; adapters call `respond` and the command methods."""

    def __init__(
        self,
        backend: Backend,
        memory: MemoryStore,
        safety: SafetyProtocol,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.memory = memory
        self.safety = safety
        self.settings = settings
        self._clock = clock
        self._options = gen_options(settings)
        self._log_ids = LogIds(memory.derive_key(LOG_KEY_LABEL))
        self._system_tokens = backend.count_tokens(SYSTEM_PROMPT)
        self._user_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self._wal_cleanup = WalCleanup(memory.finish_erasure, memory.path)
        self._model_lock = None if backend.parallel else asyncio.Lock()
        self._risk = RiskTracker(memory, clock)
        self._executor = reply_threads(backend)

    # --- one turn -------------------------------------------------------------------------

    async def respond(self, msg: IncomingMessage) -> AsyncIterator[str]:
        """Run one turn for `msg` and yield the reply as text deltas."""
        text = clean_text(msg.text)
        if not text:
            yield texts.EMPTY_MESSAGE
            return
        key = self.memory.pseudonym(msg.platform, msg.user_id)
        # The conversation of this chat only: a group reply never sees the private chat's
        # turns, nor another group's (issue 15).
        scope = self.memory.scope_key(msg.platform, msg.user_id, msg.chat_id)
        # aclosing: if the adapter stops reading, the inner steps' clean-up (storing what was
        # shown) runs now, inside the user's lock, not whenever the generator is collected.
        async with (
            self._single_flight(key),
            contextlib.aclosing(self._turn(msg, _Where(key, scope), text)) as turn,
        ):
            async for piece in turn:
                yield piece

    async def _turn(
        self, msg: IncomingMessage, where: _Where, text: str
    ) -> AsyncGenerator[str, None]:
        started = time.perf_counter()
        key = where.key
        user = self.memory.get_user(key)
        first_contact = user is None or user.notice_seen_at is None
        if user is None:  # the screen's events need the person's row; storage down: go on
            with contextlib.suppress(StorageError):
                self.memory.ensure_user(key, msg.platform)
        screen = await self._risk.screen(self.safety, key, where.scope, text)  # + context, risk
        if screen.crisis:
            # Resources come first for someone in danger; the notice follows, before storing.
            crisis = self._crisis(msg, where, text, screen, first_contact)
            async with contextlib.aclosing(crisis):
                async for piece in crisis:
                    yield piece
            return
        if first_contact:
            yield self.privacy_text() + "\n\n"
            self.memory.mark_notice_seen(key, msg.platform)
        # The length is checked before anything expensive: an over-long message is stored
        # truncated, with a marker (its whole text was screened above), and not sent on.
        too_long = len(text) > self.settings.memory.max_message_chars
        try:
            await self._store(where, msg.platform, "user", self._storable(text))
        except StorageError:
            logger.exception("user %s: could not store the turn", self._lid(key))
            yield texts.STORAGE_UNAVAILABLE
            return
        built = None if too_long else self._context(where, text)
        if built is None or not built.fits:
            yield texts.TOO_LONG
            await self._store(where, msg.platform, "assistant", texts.TOO_LONG)
            return
        async with contextlib.aclosing(self._reply(msg, where, built.messages)) as reply:
            async for piece in reply:
                yield piece
        if screen.level == "concern" and screen.subject != "other":  # it asks about the writer
            yield await self._checkin(msg, where, screen)
        logger.info(
            "user %s: turn done in %.2fs (in %d chars)",
            self._lid(key),
            time.perf_counter() - started,
            len(text),
        )

    async def _crisis(
        self,
        msg: IncomingMessage,
        where: _Where,
        text: str,
        screen: ScreenLike,
        first_contact: bool,
    ) -> AsyncGenerator[str, None]:
        """Fixed reply with resources; the model is not called. The conversation continues."""
        key = where.key
        user = self.memory.get_user(key)
        country = (user.country if user else None) or self.settings.safety.default_country
        reply = self.safety.crisis_reply(screen, country, msg.language_code)
        notice_seen = not first_contact
        try:
            yield reply
            if first_contact:
                yield "\n\n" + self.privacy_text()
                self.memory.mark_notice_seen(key, msg.platform)
                notice_seen = True
        finally:
            # The moderator event (a category, never text) is recorded even if the adapter stops
            # reading. The words are stored only once the person has seen the privacy notice.
            self.memory.add_event(key, "crisis", screen.category, scope=where.scope)
            if notice_seen:
                await self._store(where, msg.platform, "user", self._storable(text), flagged=True)
                await self._store(where, msg.platform, "assistant", reply, flagged=True)
            logger.info("user %s: crisis screen (%s)", self._lid(key), screen.category)

    async def _checkin(self, msg: IncomingMessage, where: _Where, screen: ScreenLike) -> str:
        """The fixed check-in after the model's reply at concern level (stored as a turn)."""
        user = self.memory.get_user(where.key)  # no country: the layer's default one
        checkin = self.safety.checkin_reply(screen, user.country if user else None)
        try:
            await self._store(where, msg.platform, "assistant", checkin)
            self._risk.asked(where.key, msg.platform, where.scope, screen.category)
        except StorageError:
            logger.exception("user %s: could not store the check-in", self._lid(where.key))
        return "\n\n" + checkin

    def _context(self, where: _Where, text: str) -> BuiltContext:
        m = self.settings.memory
        key = where.key
        stored = self.memory.recent_turns(key, m.max_history_turns + 1, scope=where.scope)
        history = [t.context_turn() for t in stored[:-1]]  # the last one is the current message
        built = build_context(
            history,
            text,
            self.backend.count_tokens(text),
            system_prompt=SYSTEM_PROMPT,
            system_tokens=self._system_tokens,
            budget_tokens=self.backend.n_ctx - self._options.max_new_tokens,
            representation=m.context_representation,
            raw_recent=m.raw_recent,
            blocks=m.compress_in_blocks,
        )
        r = built.report
        logger.debug(
            "user %s: context %d/%d turns (%d compressed, %d oversize skipped), "
            "history %d tokens (raw %d, ratio %.2f), budget %d",
            self._lid(key),
            r.turns_included,
            r.turns_available,
            r.turns_compressed,
            r.turns_skipped_oversize,
            r.prompt_tokens,
            r.raw_tokens,
            r.compression_ratio,
            r.budget_tokens,
        )
        return built

    async def _reply(
        self, msg: IncomingMessage, where: _Where, messages: list[Message]
    ) -> AsyncGenerator[str, None]:
        key = where.key
        reply = Reply()
        stream = self._guarded_stream(messages, reply)
        try:
            async for piece in stream:
                yield reply.add(piece)
            if reply.guard_reason is not None:
                self.memory.add_event(key, "guard", reply.guard_reason, scope=where.scope)
                logger.warning(
                    "user %s: guard stopped a reply (%s)", self._lid(key), reply.guard_reason
                )
                yield reply.add(self._joiner(reply.sent) + self.safety.fallback_reply())
            elif not reply.sent.strip():
                yield reply.add(self.safety.fallback_reply())
        except Exception as exc:
            if isinstance(exc, BackendError):
                logger.error("user %s: backend failed: %s", self._lid(key), exc)
            else:
                logger.exception("user %s: unexpected failure while generating", self._lid(key))
            self.memory.add_event(key, "backend_error", type(exc).__name__, scope=where.scope)
            yield self._joiner(reply.sent) + texts.BACKEND_UNAVAILABLE
        finally:
            await stream.aclose()
            # Also runs when the adapter stops reading or the task is cancelled: what the person
            # has already seen is kept, so the stored conversation matches theirs.
            if reply.sent.strip() and not reply.stored:
                reply.stored = True
                flagged = reply.guard_reason is not None
                try:
                    await self._store(where, msg.platform, "assistant", reply.sent, flagged=flagged)
                except StorageError:  # the reply was already shown; the user turn is safe
                    logger.exception("user %s: could not store the reply", self._lid(key))

    def _guarded_stream(self, messages: list[Message], reply: Reply) -> AsyncGenerator[str, None]:
        """Backend deltas, released only once no guard rule can still be matching them."""

        def stopped(reason: str) -> None:
            reply.guard_reason = reason

        produce = functools.partial(self.backend.generate, messages, self._options)
        chunks = stream_in_thread(produce, self._model_lock, self._executor)
        holdback = self.settings.generation.holdback_chars
        return guarded_release(
            chunks,
            self.safety.guard,
            holdback,
            stopped,
            self.safety.releasable,
            self._options.max_new_tokens,
        )

    def _storable(self, text: str) -> str:
        return truncate_for_storage(text, self.settings.memory.max_message_chars)

    @staticmethod
    def _joiner(sent: str) -> str:
        return "\n\n" if sent.strip() else ""

    async def _store(
        self, where: _Where, platform: str, role: str, text: str, *, flagged: bool = False
    ) -> None:
        form = compressed_form(self.settings.memory.context_representation)
        compressed = await self._compress(text, form) if form else None
        self.memory.add_turn(
            where.key,
            scope=where.scope,
            platform=platform,
            role=role,
            text=text,
            tokens=self.backend.count_tokens(text),
            compressed=compressed,
            representation=form if compressed is not None else None,
            compressed_tokens=self.backend.count_tokens(compressed) if compressed else None,
            flagged=flagged,
        )

    async def _compress(self, text: str, form: str) -> str | None:
        """The stored compressed form (spaCy runs in a thread); None if it is unavailable."""
        try:
            from dialogue.context import represent

            result = await asyncio.to_thread(represent, [text], form)  # type: ignore[arg-type]
        except Exception:
            logger.exception("context compression (%s) failed; storing the raw form only", form)
            return None
        return result[0] if result and result[0].strip() else None

    async def warm_up(self) -> None:
        """Load the context compressor (spaCy) now, not at the first message; prime KV caches."""
        form = compressed_form(self.settings.memory.context_representation)
        if form is not None:
            await self._compress("Warming up.", form)
        await asyncio.to_thread(warm_up_backend, self.backend, build_messages([]))
