"""Frozen data model for dialogues: `Turn` and `Dialogue`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]
ROLES: tuple[Role, ...] = ("user", "assistant")


@dataclass(frozen=True, slots=True)
class Turn:
    """One utterance. `strategy` is the canonical support-strategy name, or None."""

    role: Role
    text: str
    strategy: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"Turn.role must be one of {ROLES}, got {self.role!r}")
        if not isinstance(self.text, str):
            raise TypeError(f"Turn.text must be str, got {type(self.text).__name__}")


@dataclass(frozen=True, slots=True)
class Dialogue:
    """A whole conversation between a help-seeker ("user") and a supporter ("assistant").

    Args:
        id: stable identifier within its source, e.g. "esconv:train:17".
        source: "esconv", "extes" or a user-supplied name.
        scene: ExTES scene, or ESConv's `problem_type` (the nearest equivalent); None if unknown.
        description: ExTES description or ESConv `situation`; None if unknown.
        turns: the utterances in order.
        meta: any other fields of the source record (emotion type, survey scores, ...).
    """

    id: str
    source: str
    scene: str | None
    description: str | None
    turns: tuple[Turn, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def num_turns(self) -> int:
        """Number of utterances."""
        return len(self.turns)
