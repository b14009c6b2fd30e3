"""A person's conversation-level crisis risk (issue 17) as the store keeps it: table `risk_state`
(migration m004), one row per person across all their chats - numbers and a category, no text.
Erased by /forget like every table with a `user_key`, shown in /export, purged by retention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from bot.memory.records import iso_time

UPSERT_SQL = (
    "INSERT INTO risk_state (user_key, score, updated_at, raised, checkin, checkin_conversation) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(user_key) DO UPDATE SET score = excluded.score, "
    "updated_at = excluded.updated_at, raised = excluded.raised, checkin = excluded.checkin, "
    "checkin_conversation = excluded.checkin_conversation"
)


@dataclass(frozen=True, slots=True)
class StoredRisk:
    """A person's conversation-level crisis risk: numbers and a category, no text.

    Args:
        score: the decaying score at `updated_at` (`bot.safety.context.RiskState`).
        raised: whether the score was at or above the raised level then.
        checkin: the category a concern check-in asked about, while it waits for an answer.
        checkin_conversation: the conversation it was asked in (only an answer there counts).
    """

    score: float
    updated_at: float
    raised: bool
    checkin: str | None = None
    checkin_conversation: str | None = None

    def upsert_args(self, user_key: str) -> list[Any]:
        """The parameters of `UPSERT_SQL` for this row."""
        return [
            user_key,
            self.score,
            self.updated_at,
            int(self.raised),
            self.checkin,
            self.checkin_conversation,
        ]

    def exported(self) -> dict[str, Any]:
        """The row as `/export` shows it."""
        return {
            "score": round(self.score, 3),
            "updated": iso_time(self.updated_at),
            "raised": self.raised,
            "checkin_waiting": self.checkin,
        }


def read_risk(db: Database, user_key: str) -> StoredRisk | None:
    """The person's stored risk, or None."""
    rows = list(db.query("SELECT * FROM risk_state WHERE user_key = ?", [user_key]))
    if not rows:
        return None
    r = rows[0]
    return StoredRisk(
        float(r["score"]),
        float(r["updated_at"]),
        bool(r["raised"]),
        r["checkin"],
        r["checkin_conversation"],
    )


def risk_write(user_key: str, risk: StoredRisk | None) -> tuple[str, list[Any]]:
    """The statement that stores `risk` for the person; None deletes their row."""
    if risk is None:
        return "DELETE FROM risk_state WHERE user_key = ?", [user_key]
    return UPSERT_SQL, risk.upsert_args(user_key)
