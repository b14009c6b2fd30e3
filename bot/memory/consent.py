"""Consent to moderator review (`/review on|off`), kept on the person's row.

Consent covers the person's conversations in every scope. Withdrawing it also deletes their
consent-based audit copies (and judge scores); crisis-flagged conversations stay reviewable, as
the privacy notice says.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlite_utils import Database

# Audit tables that hold copies made because the person consented (deleted on `/review off`).
CONSENT_COPIES = ("audit_turns", "audit_judgements", "audit_conversations")


def set_review_consent(db: Database, user_key: str, on: bool, clock: Callable[[], float]) -> None:
    """Record or withdraw consent, inside the caller's write transaction."""
    if on:  # turning it on again keeps the original time
        db.execute(
            "UPDATE users SET review_consent_at = COALESCE(review_consent_at, ?) "
            "WHERE user_key = ?",
            [clock(), user_key],
        )
        return
    db.execute("UPDATE users SET review_consent_at = NULL WHERE user_key = ?", [user_key])
    consent_only = (
        "SELECT conversation_id FROM audit_conversations WHERE user_key = ? AND basis = 'consent'"
    )
    for table in CONSENT_COPIES:
        db.execute(
            f"DELETE FROM {table} WHERE user_key = ? AND conversation_id IN ({consent_only})",
            [user_key, user_key],
        )


def review_consent(db: Database, user_key: str) -> bool:
    """True when the person has turned `/review on`."""
    row = db.execute(
        "SELECT review_consent_at FROM users WHERE user_key = ?", [user_key]
    ).fetchone()
    return row is not None and row[0] is not None
