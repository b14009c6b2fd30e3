"""The moderation queue: flagged conversations most serious first, their state, notes, labels.

Which conversations are flagged, and why, comes from the moderator report's own rules
(`bot.audit.report.flagged.collect_flagged`: crisis by category, toxicity, the reply guard, low
judge scores, concern-level screens). Text comes only from the audit store (review consent or a
crisis flag), redacted again by `bot.audit.redact` when shown, exactly as the report does. The
queue's own state (`web_queue`), notes and screen-decision labels carry the bot user's
`user_key`, so `/forget` erases them.

Conversations are per chat scope (`bot.memory`): a person's private chat and each group they
talk in are separate conversations, so they are separate queue items, each with its own events
and turns. Which kind a conversation is comes from `turns.scope`; which group it was is never
stored (only a keyed hash), so the console cannot show it.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from bot.audit.redact import redact
from bot.audit.report.flagged import KEY_CHARS, collect_flagged, iso
from bot.web.store import transaction

STATES = ("new", "claimed", "escalated", "reviewed")
DECISIONS = ("correct", "false_alarm", "missed")
CATEGORIES = ("suicide", "self_harm", "abuse", "harm_to_others", "medical_emergency")
STYLES = ("explicit", "indirect", "third_person", "past", "negated", "distress", "control")
NOTE_MAX_CHARS = 4000
SECONDS_PER_HOUR = 3600.0


class QueueError(ValueError):
    """An action that cannot be done (already claimed by someone else, bad label, …)."""


class _Reader:
    """AuditDB's `query` over the console's connection (for `collect_flagged`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One flagged conversation as the queue lists it."""

    conversation_id: str
    user_key: str
    key: str
    priority: int
    reasons: list[str]
    first: float
    last: float
    reviewable: bool
    state: str
    claimed_by: str | None
    overdue: bool
    reopened: bool
    chat: str | None = None  # "telegram, group chat" (set for the items a page shows)


def _state_rows(conn: sqlite3.Connection) -> dict[str, sqlite3.Row]:
    rows = conn.execute(
        "SELECT q.*, a.name AS claimed_name FROM web_queue q "
        "LEFT JOIN web_accounts a ON a.id = q.claimed_by"
    ).fetchall()
    return {r["conversation_id"]: r for r in rows}


def _item(cid: str, entry: dict[str, Any], state: sqlite3.Row | None, reviewable: bool,
          now: float, overdue_hours: float) -> QueueItem:  # fmt: skip
    name, reopened = "new", False
    if state is not None:
        name = state["state"]
        if name == "reviewed" and entry["last"] > (state["reviewed_at"] or 0):
            name, reopened = "new", True  # flagged again after the review
    overdue = name != "reviewed" and now - entry["first"] > overdue_hours * SECONDS_PER_HOUR
    reasons = [f"{r} (×{n})" if n > 1 else r for r, n in entry["reasons"].items()]
    return QueueItem(
        cid, entry["user_key"], entry["user_key"][:KEY_CHARS], entry["priority"], reasons,
        entry["first"],
        entry["last"], reviewable, name, state["claimed_name"] if state is not None else None,
        overdue, reopened,
    )  # fmt: skip


def queue_items(
    conn: sqlite3.Connection, start: float, end: float, now: float, overdue_hours: float
) -> list[QueueItem]:
    """Every conversation flagged in [start, end), most serious first (as the report orders)."""
    found = collect_flagged(_Reader(conn), start, end)
    states = _state_rows(conn)
    reviewable = {r[0] for r in conn.execute("SELECT conversation_id FROM audit_conversations")}
    order = sorted(
        found.items(),
        key=lambda kv: (kv[1]["priority"], len(kv[1]["reasons"]), kv[1]["last"]),
        reverse=True,
    )
    return [
        _item(cid, e, states.get(cid), cid in reviewable, now, overdue_hours) for cid, e in order
    ]


def with_chats(conn: sqlite3.Connection, items: list[QueueItem]) -> list[QueueItem]:
    """The items with `chat` filled in: the platform and whether the conversation is the
    person's private chat or one of their group chats (from its first stored turn)."""
    out = []
    for item in items:
        row = conn.execute(  # the (user_key, conversation_id, id) index
            "SELECT platform, scope FROM turns WHERE user_key = ? AND conversation_id = ? "
            "ORDER BY id LIMIT 1", [item.user_key, item.conversation_id]
        ).fetchone()  # fmt: skip
        chat = None if row is None else f"{row[0]}, {row[1] or 'private'} chat"
        out.append(dataclasses.replace(item, chat=chat))
    return out


def counts(items: list[QueueItem], me: str | None = None) -> dict[str, int]:
    """How many conversations are in each state, overdue, and claimed by `me` (still open)."""
    out = dict.fromkeys(STATES, 0)
    for item in items:
        out[item.state] += 1
    out["overdue"] = sum(1 for i in items if i.overdue)
    out["mine"] = sum(1 for i in items if i.claimed_by == me and i.state != "reviewed")
    out["all"] = len(items)
    return out


def one_item(
    conn: sqlite3.Connection, cid: str, start: float, end: float, now: float, overdue_hours: float
) -> QueueItem | None:
    """The queue entry of one conversation (None when it is not flagged)."""
    found = collect_flagged(_Reader(conn), start, end, conversation_id=cid)
    if cid not in found:
        return None
    state = _state_rows(conn).get(cid)
    reviewable = conn.execute(
        "SELECT 1 FROM audit_conversations WHERE conversation_id = ?", [cid]
    ).fetchone()
    item = _item(cid, found[cid], state, reviewable is not None, now, overdue_hours)
    return with_chats(conn, [item])[0]


def conversation_detail(conn: sqlite3.Connection, cid: str) -> dict[str, Any]:
    """Events, the redacted excerpt (audit store only), notes and labels of a conversation."""
    events = [
        {"kind": r["kind"], "category": r["category"] or "unspecified",
         "detail": r["detail"] or "", "time": iso(r["created_at"])}
        for r in conn.execute(
            "SELECT kind, category, detail, created_at FROM events WHERE conversation_id = ? "
            "ORDER BY created_at, id", [cid])
    ]  # fmt: skip
    judged = conn.execute(
        "SELECT judge_model, engagement, comforting, appropriateness, suggestion, judged_at "
        "FROM audit_judgements WHERE conversation_id = ?", [cid]
    ).fetchall()  # fmt: skip
    turns = [
        {"turn_id": r["turn_id"], "role": r["role"], "text": redact(r["text"] or "")[0],
         "time": iso(r["created_at"]), "flagged": bool(r["flagged"])}
        for r in conn.execute(
            "SELECT turn_id, role, text, flagged, created_at FROM audit_turns "
            "WHERE conversation_id = ? ORDER BY created_at, turn_id", [cid])
    ]  # fmt: skip
    notes = conn.execute(
        "SELECT n.kind, n.text, n.created_at, a.name FROM web_notes n LEFT JOIN web_accounts a "
        "ON a.id = n.account_id WHERE n.conversation_id = ? ORDER BY n.id", [cid]
    ).fetchall()  # fmt: skip
    labels = {
        r["turn_id"]: r
        for r in conn.execute(
            "SELECT l.*, a.name FROM web_labels l LEFT JOIN web_accounts a ON a.id = l.account_id "
            "WHERE l.conversation_id = ? ORDER BY l.id",
            [cid],
        )
    }  # fmt: skip (latest label per turn wins)
    consent = conn.execute(
        "SELECT u.review_consent_at FROM users u JOIN audit_conversations c ON "
        "c.user_key = u.user_key WHERE c.conversation_id = ?", [cid]
    ).fetchone()  # fmt: skip
    return {
        "events": events,
        "judgements": [dict(r) | {"time": iso(r["judged_at"])} for r in judged],
        "turns": turns,
        "notes": [{"kind": n["kind"], "text": n["text"], "time": iso(n["created_at"]),
                   "by": n["name"]} for n in notes],  # fmt: skip
        "labels": {k: {"decision": v["decision"], "category": v["category"],
                       "style": v["style"], "by": v["name"]} for k, v in labels.items()},
        "consent": consent is not None and consent[0] is not None,
    }  # fmt: skip


# --- actions ---------------------------------------------------------------------------------


def _user_key(conn: sqlite3.Connection, cid: str) -> str:
    row = conn.execute(
        "SELECT user_key FROM events WHERE conversation_id = ? UNION "
        "SELECT user_key FROM audit_judgements WHERE conversation_id = ? LIMIT 1", [cid, cid]
    ).fetchone()  # fmt: skip
    if row is None:
        raise QueueError("this conversation is not flagged (or was erased)")
    return str(row[0])


def _ensure_row(conn: sqlite3.Connection, cid: str, now: float) -> sqlite3.Row:
    conn.execute(
        "INSERT OR IGNORE INTO web_queue (conversation_id, user_key, state, updated_at) "
        "VALUES (?, ?, 'new', ?)", [cid, _user_key(conn, cid), now]
    )  # fmt: skip
    return conn.execute(
        "SELECT q.*, a.name AS claimed_name FROM web_queue q LEFT JOIN web_accounts a "
        "ON a.id = q.claimed_by WHERE conversation_id = ?", [cid]
    ).fetchone()  # fmt: skip


def _note(conn: sqlite3.Connection, cid: str, user_key: str, account_id: int, kind: str,
          text: str | None, now: float) -> None:  # fmt: skip
    text = (text or "").strip()[:NOTE_MAX_CHARS] or None
    if kind == "note" and text is None:
        raise QueueError("the note is empty")
    conn.execute(
        "INSERT INTO web_notes (conversation_id, user_key, account_id, kind, text, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)", [cid, user_key, account_id, kind, text, now]
    )  # fmt: skip


def act(
    conn: sqlite3.Connection, cid: str, action: str, account_id: int, is_admin: bool, now: float,
    *, note: str | None = None, to_account: int | None = None,
) -> str:  # fmt: skip
    """Apply a queue action; returns a short confirmation. QueueError when it cannot be done.

    Actions: claim, release, handover (to another moderator), review, reopen, escalate (to an
    admin, with a reason), resolve (admin: an escalation is dealt with), note.
    """
    with transaction(conn):
        row = _ensure_row(conn, cid, now)
        mine = row["claimed_by"] in (None, account_id) or is_admin
        set_: dict[str, Any] = {}
        if action == "claim":
            if not mine:
                raise QueueError(f"already claimed by {row['claimed_name']}")
            set_ = {"state": "claimed", "claimed_by": account_id, "claimed_at": now}
        elif action == "release":
            set_ = {"state": "new", "claimed_by": None, "claimed_at": None}
        elif action == "handover":
            ok = conn.execute(
                "SELECT 1 FROM web_accounts WHERE id = ? AND role IN ('moderator', 'admin') AND "
                "disabled_at IS NULL", [to_account]).fetchone()  # fmt: skip
            if not mine or ok is None:
                raise QueueError("hand over only your own conversations, to a moderator")
            set_ = {"state": "claimed", "claimed_by": to_account, "claimed_at": now}
            _note(conn, cid, row["user_key"], account_id, "handover", note, now)
        elif action == "review":
            set_ = {"state": "reviewed", "reviewed_by": account_id, "reviewed_at": now}
        elif action == "reopen":
            set_ = {"state": "claimed" if row["claimed_by"] else "new", "reviewed_at": None}
        elif action == "escalate":
            if not (note or "").strip():
                raise QueueError("say why you escalate (the admin reads it)")
            set_ = {"state": "escalated", "escalated_by": account_id, "escalated_at": now}
            _note(conn, cid, row["user_key"], account_id, "escalation", note, now)
        elif action == "resolve" and is_admin:
            set_ = {"state": "reviewed", "reviewed_by": account_id, "reviewed_at": now}
            _note(conn, cid, row["user_key"], account_id, "resolved", note, now)
        elif action == "note":
            _note(conn, cid, row["user_key"], account_id, "note", note, now)
        else:
            raise QueueError(f"unknown action {action!r}")
        if set_:
            assignments = ", ".join(f"{k} = ?" for k in set_)
            conn.execute(
                f"UPDATE web_queue SET {assignments}, updated_at = ? WHERE conversation_id = ?",
                [*set_.values(), now, cid],
            )
    return {"claim": "claimed", "release": "released", "handover": "handed over",
            "review": "marked reviewed", "reopen": "reopened", "escalate": "escalated to an admin",
            "resolve": "escalation resolved", "note": "note added"}[action]  # fmt: skip


def label(
    conn: sqlite3.Connection, cid: str, turn_id: int, decision: str, account_id: int, now: float,
    *, category: str | None = None, style: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Label the screen's decision on one message: correct, false_alarm (it flagged a message
    that is not a crisis) or missed (it passed a crisis). Returns the case it stands for."""
    row = conn.execute(
        "SELECT t.user_key, t.role, t.flagged, c.basis FROM audit_turns t JOIN "
        "audit_conversations c ON c.conversation_id = t.conversation_id "
        "WHERE t.conversation_id = ? AND t.turn_id = ?", [cid, turn_id]
    ).fetchone()  # fmt: skip
    if row is None or row["role"] != "user":
        raise QueueError("label a person's message of this conversation")
    if decision not in DECISIONS:
        raise QueueError(f"the decision is one of {', '.join(DECISIONS)}")
    flagged = bool(row["flagged"])
    if (decision == "false_alarm" and not flagged) or (decision == "missed" and flagged):
        raise QueueError("false alarm is for a flagged message, missed for one the screen passed")
    crisis = decision == "missed" or (decision == "correct" and flagged)
    if crisis:
        if decision == "correct":  # the screen's own category, unless the moderator names one
            category = category or _screen_category(conn, cid)
        if category not in CATEGORIES:
            raise QueueError("name the crisis category")
    else:
        category = None
    style = style or ("explicit" if crisis else "distress")
    if style not in STYLES:
        raise QueueError(f"the style is one of {', '.join(STYLES)}")
    level = "crisis" if crisis else "none"
    with transaction(conn):
        conn.execute(
            "INSERT INTO web_labels (conversation_id, user_key, turn_id, decision, level, "
            "category, style, account_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [cid, row["user_key"], turn_id, decision, level, category, style, account_id, now],
        )
    return {"level": level, "category": category, "style": style}


def _screen_category(conn: sqlite3.Connection, cid: str) -> str | None:
    row = conn.execute(
        "SELECT category FROM events WHERE conversation_id = ? AND kind = 'crisis' "
        "ORDER BY id LIMIT 1", [cid]
    ).fetchone()  # fmt: skip
    return None if row is None else row[0]


def export_cases(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Labelled messages whose author has review consent, as `solace safety evaluate` cases
    (redacted text; the latest label per message)."""
    rows = conn.execute(
        "SELECT l.turn_id, l.decision, l.level, l.category, l.style, t.text FROM web_labels l "
        "JOIN (SELECT turn_id, MAX(id) AS id FROM web_labels GROUP BY turn_id) latest "
        "ON latest.id = l.id JOIN audit_turns t ON t.turn_id = l.turn_id "
        "AND t.conversation_id = l.conversation_id JOIN users u ON u.user_key = l.user_key "
        "WHERE u.review_consent_at IS NOT NULL ORDER BY l.id"
    ).fetchall()
    return [
        {"text": redact(r["text"] or "")[0], "level": r["level"], "category": r["category"],
         "style": r["style"], "decision": r["decision"], "origin": "moderator label"}
        for r in rows
    ]  # fmt: skip


def cases_jsonl(cases: list[dict[str, Any]]) -> str:
    """JSON Lines for `solace safety evaluate FILE`."""
    return "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases)
