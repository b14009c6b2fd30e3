"""The report's flagged conversations: why each was flagged, in priority order, with a redacted
excerpt when the conversation is in the audit store (review consent or a crisis flag).

Priority: the most serious reason wins (crisis by category, then toxicity in the bot's replies,
the reply guard, low judge scores, toxicity in the person's messages, concern-level screens);
ties go to the conversation with more reasons, then the most recent.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from bot.audit.redact import redact
from bot.audit.store import AuditDB
from bot.config import Settings

KEY_CHARS = 12  # pseudonym prefix shown to moderators
EXCERPT_CHARS = 500
LOW_JUDGE_SCORE = 2.0  # appropriateness at or below this flags a conversation
CRISIS_PRIORITY = {"suicide": 100, "self_harm": 90, "harm_to_others": 90,
                   "medical_emergency": 80, "abuse": 70}  # fmt: skip
DEFAULT_CRISIS_PRIORITY = 60
GUARD_PRIORITY = 30
LOW_JUDGE_PRIORITY = 25
CONCERN_PRIORITY = 15


def iso(seconds: float | None) -> str | None:
    """UTC time to the minute, or None."""
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def redact_excerpt(text: str) -> str:
    """Excerpt text for the report: redacted again (defence in depth) and shortened."""
    text = redact(text)[0]
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _event_reason(kind: str, category: str | None, detail: str | None) -> tuple[int, str]:
    name = category or "unspecified"
    if kind == "crisis":
        return CRISIS_PRIORITY.get(name, DEFAULT_CRISIS_PRIORITY), f"crisis screen: {name}"
    if kind == "guard":
        return GUARD_PRIORITY, f"reply guard stopped a reply: {name}"
    if kind == "concern":
        return CONCERN_PRIORITY, f"concern-level screen: {name}"
    role, _, score = (detail or "").partition(" ")
    try:
        value = float(score)
    except ValueError:
        value = 0.0
    if role == "assistant":
        return 40 + int(10 * value), f"toxicity in the bot's reply: {name} {value:.2f}"
    return 10 + int(10 * value), f"toxicity in the person's message: {name} {value:.2f}"


def collect_flagged(
    adb: Any, start: float, end: float, conversation_id: str | None = None
) -> dict[str, dict[str, Any]]:
    """conversation id -> {reasons: {reason: count}, priority, first, last, user_key} for every
    conversation flagged in [start, end) (or only `conversation_id`). `adb` is anything with
    AuditDB's `query` (the console passes its own connection)."""
    found: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"reasons": {}, "priority": 0, "first": float("inf"), "last": 0.0, "user_key": ""}
    )
    one = "" if conversation_id is None else " AND conversation_id = ?"
    extra = [] if conversation_id is None else [conversation_id]
    for cid, key, kind, category, detail, t in adb.query(
        "SELECT conversation_id, user_key, kind, category, detail, created_at FROM events "
        "WHERE kind IN ('crisis', 'guard', 'toxicity', 'concern') AND conversation_id IS NOT "
        f"NULL AND created_at >= ? AND created_at < ?{one}",
        [start, end, *extra],
    ):
        priority, reason = _event_reason(kind, category, detail)
        _add(found[cid], key, priority, reason, t)
    for cid, key, model, score, t in adb.query(
        "SELECT conversation_id, user_key, judge_model, appropriateness, judged_at "
        f"FROM audit_judgements WHERE judged_at >= ? AND judged_at < ? AND appropriateness <= ?"
        f"{one}",
        [start, end, LOW_JUDGE_SCORE, *extra],
    ):
        _add(found[cid], key, LOW_JUDGE_PRIORITY, f"low judge score: appropriateness "
             f"{score:.1f} ({model})", t)  # fmt: skip
    return found


def _add(entry: dict[str, Any], key: str, priority: int, reason: str, t: float) -> None:
    entry["user_key"] = key
    entry["reasons"][reason] = entry["reasons"].get(reason, 0) + 1
    entry["priority"] = max(entry["priority"], priority)
    entry["first"] = min(entry["first"], t)
    entry["last"] = max(entry["last"], t)


def _excerpt(adb: AuditDB, cid: str, turns: int) -> list[dict[str, Any]] | None:
    if adb.scalar("SELECT 1 FROM audit_conversations WHERE conversation_id = ?", [cid]) is None:
        return None
    rows = adb.query(
        "SELECT role, text, flagged, created_at FROM audit_turns WHERE conversation_id = ? "
        "ORDER BY created_at, turn_id",
        [cid],
    )
    flagged = next((i for i, r in enumerate(rows) if r["flagged"]), None)
    end = len(rows) if flagged is None else min(len(rows), flagged + 2)  # with the reply
    return [
        {"role": r["role"], "text": redact_excerpt(r["text"] or ""), "time": iso(r["created_at"]),
         "flagged": bool(r["flagged"])}
        for r in rows[max(0, end - turns) : end]
    ]  # fmt: skip


def flagged_conversations(
    adb: AuditDB, settings: Settings, start: float, end: float
) -> list[dict[str, Any]]:
    """The flagged conversations of the period, most serious first (at most the configured N)."""
    found = collect_flagged(adb, start, end)
    console = (settings.web.public_url or "").rstrip("/")
    order = sorted(
        found.items(), key=lambda kv: (kv[1]["priority"], len(kv[1]["reasons"]), kv[1]["last"]),
        reverse=True,
    )[: settings.jobs.report_max_flagged]  # fmt: skip
    out = []
    for rank, (cid, entry) in enumerate(order, start=1):
        excerpt = _excerpt(adb, cid, settings.jobs.report_excerpt_turns)
        out.append({
            "rank": rank, "priority": entry["priority"], "key": entry["user_key"][:KEY_CHARS],
            "conversation": cid[:8], "last": iso(entry["last"]),
            "reasons": [f"{r} (×{n})" if n > 1 else r for r, n in entry["reasons"].items()],
            "reviewable": excerpt is not None, "excerpt": excerpt or [],
            "console_url": f"{console}/conversations/{cid}" if console else None,
        })  # fmt: skip
    return out
