"""The engine's conversation-level risk bookkeeping (issue 17), kept apart from the turn logic.

`RiskTracker` reads and writes the per-person risk state in the memory store (table
`risk_state`: a decaying score, whether it is raised, and a check-in waiting for an answer;
numbers and a category only, never text). It is erased by /forget and shown in /export like
every per-user table. When the state rises to raised, a `risk_raised` moderator event is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.memory import MemoryStore
from bot.safety_context import CONTEXT_TURNS, RiskState


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
    """What one turn needs to know before screening."""

    state: RiskState
    raised: bool
    checkin: str | None
    context: tuple[str, ...]


class RiskTracker:
    """Loads the state and recent user turns before a screen; records the outcome after it."""

    def __init__(self, memory: MemoryStore, clock: Callable[[], float]) -> None:
        self._memory = memory
        self._clock = clock

    def load(self, key: str) -> RiskView:
        """The person's risk state now and their last few user turns (oldest first)."""
        stored = self._memory.get_risk(key)
        now = self._clock()
        state = RiskState() if stored is None else RiskState(stored["score"], stored["updated_at"])
        turns = self._memory.recent_turns(key, 4 * CONTEXT_TURNS)
        context = tuple(t.text for t in turns if t.role == "user")[-CONTEXT_TURNS:]
        checkin = None if stored is None else stored["checkin"]
        return RiskView(state, state.raised(now), checkin, context)

    def record(
        self, key: str, view: RiskView, level: str, category: str | None, checkin: str | None
    ) -> None:
        """Store the state after a message screened at `level`; event when it becomes raised."""
        now = self._clock()
        state = view.state.after(level, now)
        raised = state.raised(now)
        if raised and not view.raised:
            self._memory.add_event(key, "risk_raised", category)
        self._memory.set_risk(key, state.score, state.updated_at, raised, checkin)
