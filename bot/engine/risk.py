"""The engine's conversation-level risk bookkeeping (issue 17), kept apart from the turn logic.

`RiskTracker` reads and writes the per-person risk state in the memory store (table
`risk_state`: a decaying score, whether it is raised, and a check-in waiting for an answer;
numbers and a category only, never text). It is erased by /forget and shown in /export like
every per-user table. When the state rises to raised, a `risk_raised` moderator event is stored.

Chat scopes (issue 15): the score is per person across all their chats - someone who wrote in
private an hour ago that they see no way out gets the lower thresholds in a group too, and
only numbers cross. The context the screen reads (the last few user turns) comes from the
current chat's conversation only, so a group's screen never reads private text; a check-in is
answered only in the conversation it was asked in, within `CHECKIN_ANSWER_SECONDS`.

Bookkeeping never stops a turn: a storage failure is logged (no text) and the turn goes on with
an empty state, so the crisis rules and the reply still run.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from bot.errors import StorageError
from bot.memory import MemoryStore, StoredRisk
from bot.safety.context import CONTEXT_TURNS, RISK_FORGET_BELOW, RISK_RAISED_AT, RiskState
from bot.safety.protocols import SafetyProtocol, ScreenLike

logger = logging.getLogger(__name__)

CHECKIN_ANSWER_SECONDS = 6 * 3600.0
# The turns read for context: enough to find CONTEXT_TURNS user turns among the bot's replies
# (and a check-in, which is a turn of its own).
CONTEXT_SCAN_TURNS = 3 * CONTEXT_TURNS + 2


@dataclass(frozen=True, slots=True)
class CheckinAnswer:
    """A "yes" to the check-in: screened as a crisis of the category the check-in asked about."""

    category: str | None
    crisis: bool = True
    level: str = "crisis"
    matched: str = "checkin:yes"
    subject: str = "self"


@dataclass(frozen=True, slots=True)
class RiskView:
    """What one turn needs to know before screening.

    Args:
        checkin: the category of a check-in asked in this conversation and not yet answered.
        context: the person's last few user turns in this chat's conversation, oldest first.
    """

    state: RiskState
    raised: bool
    checkin: str | None
    context: tuple[str, ...]
    stored: StoredRisk | None = None


EMPTY_VIEW = RiskView(RiskState(), False, None, ())


class RiskTracker:
    """Loads the state and recent user turns before a screen; records the outcome after it."""

    def __init__(self, memory: MemoryStore, clock: Callable[[], float]) -> None:
        self._memory = memory
        self._clock = clock

    async def screen(
        self, safety: SafetyProtocol, key: str, scope: str | None, text: str
    ) -> ScreenLike:
        """Screen `text` with the person's recent user turns here and their risk state; a "yes"
        to a check-in waiting in this conversation is a crisis. The outcome is recorded."""
        view = self.load(key, scope)
        screen: ScreenLike = await safety.screen(text, view.context, raised=view.raised)
        if not screen.crisis and view.checkin is not None and safety.answers_yes(text):
            screen = CheckinAnswer(view.checkin)  # the crisis reply, without the model
        self.record(key, scope, view, screen.level, screen.category)
        return screen

    def load(self, key: str, scope: str | None) -> RiskView:
        """The person's risk state now and their last few user turns in this chat."""
        try:
            stored = self._memory.get_risk(key)
            turns = self._memory.recent_turns(key, CONTEXT_SCAN_TURNS, scope=scope)
        except (StorageError, sqlite3.Error) as exc:
            logger.error("risk state unreadable (%s); screening without it", type(exc).__name__)
            return EMPTY_VIEW
        now = self._clock()
        state = RiskState() if stored is None else RiskState(stored.score, stored.updated_at)
        # A message that already got the crisis reply (stored flagged) is not joined again: the
        # context finds risk no single message showed, and must not answer every later message
        # with the crisis reply; the raised state lowers the thresholds for those instead.
        context = tuple(t.text for t in turns if t.role == "user" and not t.flagged)
        context = context[-CONTEXT_TURNS:]
        conversation = turns[-1].conversation_id if turns else None
        checkin = None
        if (
            stored is not None
            and stored.checkin is not None
            and stored.checkin_conversation == conversation
            and now - stored.updated_at <= CHECKIN_ANSWER_SECONDS
        ):
            checkin = stored.checkin
        return RiskView(state, state.raised(now), checkin, context, stored)

    def record(
        self, key: str, scope: str | None, view: RiskView, level: str, category: str | None
    ) -> None:
        """Store the state after a message screened at `level`; an event when it becomes
        raised (and a `concern` event at that level). This message answers a check-in waiting here; one asked in another chat waits on."""
        now = self._clock()
        state = view.state.after(level, now)
        raised = state.raised(now)
        stored = view.stored
        keep_checkin = (
            stored is not None
            and stored.checkin is not None
            and view.checkin is None
            and now - stored.updated_at <= CHECKIN_ANSWER_SECONDS
        )
        checkin = stored.checkin if keep_checkin and stored else None
        where = stored.checkin_conversation if keep_checkin and stored else None
        row = None
        if state.score >= RISK_FORGET_BELOW or checkin is not None:
            row = StoredRisk(state.score, state.updated_at, raised, checkin, where)
        try:
            if raised and not view.raised:
                self._memory.add_event(key, "risk_raised", category, scope=scope)
            if level == "concern":  # a moderator event, a category, never text
                self._memory.add_event(key, "concern", category, scope=scope)
            if row is not None or stored is not None:
                self._memory.set_risk(key, row)
        except StorageError as exc:
            logger.error("risk state not stored (%s); the turn goes on", type(exc).__name__)

    def asked(self, key: str, platform: str, scope: str | None, category: str | None) -> None:
        """Remember that a check-in about `category` now waits for an answer in the conversation
        of this chat."""
        try:
            conversation_id = self._memory.conversation_id(key, platform, scope)
            stored = self._memory.get_risk(key)
            now = self._clock()
            state = RiskState() if stored is None else RiskState(stored.score, stored.updated_at)
            state = state.decayed(now)
            raised = state.score >= RISK_RAISED_AT
            row = StoredRisk(state.score, now, raised, category or "suicide", conversation_id)
            self._memory.set_risk(key, row)
        except (StorageError, sqlite3.Error) as exc:
            logger.error("check-in not recorded (%s); the turn goes on", type(exc).__name__)
