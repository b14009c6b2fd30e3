"""The shape of the safety layer as the engine uses it (`bot.safety.SafetyLayer` implements it),
and of the optional LLM second opinion it is given (`Classify`).

Kept separate so the engine and its tests depend on the contract in docs/architecture.md, not on
the implementation. There is deliberately no pass-through implementation: the bot never runs
without crisis screening.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from dialogue.prompts import Message

Classify = Callable[[list[Message]], str]
"""The LLM second opinion: chat messages in, the model's whole answer out (blocking)."""


class ScreenLike(Protocol):
    """What the engine reads from `ScreenResult`."""

    @property
    def crisis(self) -> bool:
        """True when the fixed crisis reply must be sent instead of a model reply."""
        ...

    @property
    def category(self) -> str | None:
        """suicide, self_harm, abuse, harm_to_others, medical_emergency, or None."""
        ...

    @property
    def level(self) -> str:
        """none, concern or crisis."""
        ...

    @property
    def subject(self) -> str:
        """self (the writer is at risk) or other (they write about someone else)."""
        ...


class GuardLike(Protocol):
    """What the engine reads from `GuardResult`."""

    @property
    def ok(self) -> bool:
        """False when the reply so far must not be sent."""
        ...

    @property
    def reason(self) -> str | None:
        """A category for the guard event (never text)."""
        ...


class SafetyProtocol(Protocol):
    """The safety layer: screen the user's message, guard the reply, fixed replies."""

    async def screen(
        self, text: str, context: Sequence[str] = (), *, raised: bool = False
    ) -> ScreenLike:
        """Classify the user's message, given their earlier user turns (oldest first) and
        whether their conversation-level risk is raised."""
        ...

    def checkin_reply(self, result: Any, country: str | None) -> str:
        """The fixed check-in that follows the model's reply when the level is concern."""
        ...

    def answers_yes(self, text: str) -> bool:
        """True when a message answers the check-in with yes."""
        ...

    def crisis_reply(self, result: Any, country: str | None, language_code: str | None) -> str:
        """The fixed, caring reply with resources for a crisis (`result` is what `screen`
        returned; typed Any so implementations may name their own result class)."""
        ...

    def guard(self, reply_so_far: str, *, final: bool) -> GuardLike:
        """Check the reply generated so far (`final` once it is complete)."""
        ...

    def releasable(self, reply_so_far: str, sent: int) -> int:
        """How many leading characters of a guard-passed partial reply may be sent now (at
        least `sent`, what already was): none a guard rule could still be matching."""
        ...

    def fallback_reply(self) -> str:
        """What replaces a reply the guard rejected."""
        ...
