"""What `/export` hands a person: everything stored about them, as one JSON-ready document."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlite_utils import Database

from bot.memory.records import UserRecord, iso_time
from bot.memory.risk import read_risk
from bot.memory.schema import PRIVATE_SCOPE


def export_user(db: Database, user_key: str, user: UserRecord | None) -> dict[str, Any]:
    """Everything stored about the user, grouped by conversation.

    Each conversation says its `chat` ("private" or "group") and whether it is `current`.
    """
    current = {row[0] for row in db.execute(
        "SELECT conversation_id FROM chat_scopes WHERE user_key = ?", [user_key]
    )}  # fmt: skip
    if user is not None:
        current.add(user.conversation_id)
    conversations: dict[str, dict[str, Any]] = {}
    for row in db.query("SELECT * FROM turns WHERE user_key = ? ORDER BY id", [user_key]):
        cid = row["conversation_id"]
        conversation = conversations.setdefault(
            cid,
            {"id": cid, "chat": row["scope"] or PRIVATE_SCOPE, "current": cid in current,
             "turns": []},
        )  # fmt: skip
        conversation["turns"].append(
            {
                "role": row["role"],
                "text": row["text"],
                "time": iso_time(row["created_at"]),
                "flagged": bool(row["flagged"]),
            }
        )
    events = [
        {"kind": r["kind"], "category": r["category"], "time": iso_time(r["created_at"])}
        for r in db.query("SELECT * FROM events WHERE user_key = ? ORDER BY id", [user_key])
    ]
    return {
        "user": None
        if user is None
        else {
            **{k: v for k, v in asdict(user).items() if k != "notice_seen_at"},
            "notice_seen": iso_time(user.notice_seen_at),
        },
        "conversations": list(conversations.values()),
        "events": events,
        "risk_state": None if (risk := read_risk(db, user_key)) is None else risk.exported(),
    }
