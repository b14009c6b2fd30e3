"""The rows the memory store hands out: a stored turn and a person's record (frozen)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from dialogue.window import ContextTurn


@dataclass(frozen=True, slots=True)
class StoredTurn:
    """One stored utterance of a conversation."""

    id: int
    conversation_id: str
    role: str
    text: str
    compressed: str | None
    representation: str | None
    tokens: int
    compressed_tokens: int | None
    flagged: bool
    created_at: float

    def context_turn(self) -> ContextTurn:
        """This turn as the context window takes it (`dialogue.window`)."""
        return ContextTurn(
            self.role,
            self.text,
            self.tokens,
            self.compressed,
            self.representation,
            self.compressed_tokens,
        )


@dataclass(frozen=True, slots=True)
class UserRecord:
    """Per-user state: private conversation, consent notice, country for crisis resources."""

    user_key: str
    platform: str
    conversation_id: str
    notice_seen_at: float | None
    country: str | None


def iso_time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def turn_from_row(r: Any) -> StoredTurn:
    return StoredTurn(
        r["id"],
        r["conversation_id"],
        r["role"],
        r["text"],
        r["compressed"],
        r["representation"],
        r["tokens"],
        r["compressed_tokens"],
        bool(r["flagged"]),
        r["created_at"],
    )
