"""Generated conversations for the audit tests and `bench/bench_audit.py`.

`populate(path, ...)` writes users, turns and events straight into the real schema (one
transaction, executemany) so 10,000 conversations take seconds. Texts mix ordinary support talk
with what the audits must catch: emails, phone numbers, links, platform-like ids, HTML/script
injection, toxic words and crisis statements (recorded as `crisis` events, as the engine does).
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.audit.state import JobState, load_state
from bot.audit.store import audit_connection
from bot.config import Settings
from bot.memory import open_memory

SECRET = b"solace-audit-test-secret-0123456789abcdef"
PLATFORM_ID = "987654321012"  # a raw platform user id that must never reach a report
EMAIL = "jane.doe@example.org"
INJECTION = '<script>alert("x")</script><img src=x onerror=alert(1)>'
USER_LINES = (
    "I can't sleep and my thoughts keep racing.",
    "My sister stopped talking to me after the wedding.",
    "Work has been overwhelming, I feel like I'm drowning.",
    "I miss my dad so much since he passed.",
    f"You can email me at {EMAIL} or call +1 415 555 0134.",
    f"Here is my profile https://social.example.com/u/{PLATFORM_ID} if it helps",
    f"my telegram id is {PLATFORM_ID}, message me @jane_doe_92",
    f"I pasted this from a site: {INJECTION}",
    "you are a stupid idiot and this is useless",
)
CRISIS_LINE = "I want to end it all tonight."
BOT_LINES = (
    "That sounds really hard. What has been weighing on you the most?",
    "I'm sorry you're going through this. Would you like to tell me more?",
    "It makes sense to feel that way. What has helped you before?",
)
TOXIC_BOT_LINE = "Honestly that is a stupid idea, you idiot."
CRISIS_CATEGORIES = ("suicide", "self_harm", "abuse")


@dataclass
class Population:
    """What was generated (for assertions)."""

    users: list[str] = field(default_factory=list)
    consenting: set[str] = field(default_factory=set)
    conversations: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (user, n)
    crisis_conversations: set[str] = field(default_factory=set)
    turns: int = 0


def populate(
    path: Path,
    conversations: int,
    *,
    start: float,
    end: float,
    seed: int = 7,
    consent_share: float = 0.5,
    crisis_share: float = 0.05,
    toxic_bot_share: float = 0.03,
    consent_at: float | None = None,
) -> Population:
    """Write `conversations` conversations (2–24 turns) with times spread over [start, end)."""
    store = open_memory(path, SECRET)  # creates the file and applies the migrations
    rng = random.Random(seed)
    pop = Population()
    users, turns, events = [], [], []
    for i in range(conversations):
        key = store.pseudonym("telegram", str(10_000_000 + i))
        cid = uuid.UUID(int=rng.getrandbits(128)).hex
        t = rng.uniform(start, end - 3600)
        consent = rng.random() < consent_share
        users.append(
            (key, "telegram", cid, t, t + 3600, consent_at or start - 1 if consent else None)
        )
        pop.users.append(key)
        if consent:
            pop.consenting.add(key)
        n = rng.choice((2, 2, 4, 6, 8, 12, 16, 24))
        crisis_at = rng.randrange(0, n, 2) if rng.random() < crisis_share else None
        for j in range(n):
            t += rng.uniform(20, 120)
            role = "user" if j % 2 == 0 else "assistant"
            flagged = crisis_at is not None and j in (crisis_at, crisis_at + 1)
            if role == "user":
                text = CRISIS_LINE if j == crisis_at else rng.choice(USER_LINES)
            else:
                text = TOXIC_BOT_LINE if rng.random() < toxic_bot_share else rng.choice(BOT_LINES)
            turns.append((key, cid, "telegram", role, text, len(text.split()), int(flagged), t))
            if j == crisis_at:
                events.append((key, cid, "crisis", rng.choice(CRISIS_CATEGORIES), t))
                pop.crisis_conversations.add(cid)
        pop.conversations[cid] = (key, n)
        pop.turns += n
    _insert(store.db.conn, users, turns, events)
    store.db.close()
    return pop


def _insert(conn: sqlite3.Connection, users: list, turns: list, events: list) -> None:
    with conn:
        conn.executemany(
            "INSERT INTO users (user_key, platform, conversation_id, notice_seen_at, created_at, "
            "last_seen_at, review_consent_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(k, p, c, t, t, last, consent) for k, p, c, t, last, consent in users],
        )
        conn.executemany(
            "INSERT INTO turns (user_key, conversation_id, platform, role, text, tokens, "
            "flagged, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            turns,
        )
        conn.executemany(
            "INSERT INTO events (user_key, conversation_id, kind, category, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            events,
        )


# --- reading the audit store back -------------------------------------------------------

DAY = 86_400.0


NOW = 1_760_000_000.0


def make_settings(db: Path, **jobs: Any) -> Settings:
    """Settings in code: echo backend, the temp database, the given jobs keys."""
    return Settings(
        model={"backend": "echo", "n_ctx": 512},
        memory={"db_path": db, "context_representation": "raw", "retention_days": 30},
        jobs={"report_dir": db.parent / "reports", **jobs},
    )


def rows(db: Path, sql: str, params: list[Any] | None = None) -> list[Any]:
    with audit_connection(db) as adb:
        return [tuple(r) for r in adb.query(sql, params or [])]


def count(db: Path, sql: str, params: list[Any] | None = None) -> int:
    return int(rows(db, sql, params)[0][0])


def load_state_of(db: Path, job: str) -> JobState:
    with audit_connection(db) as adb:
        return load_state(adb, job)


# --- a scripted LLM judge -------------------------------------------------------------------

GOOD_JUDGE = '{"Engagement": 4, "Comforting": 5, "Appropriateness": 4, "Suggestion": 3}'


class ScriptedJudge:
    """An OpenAI-compatible handler answering every request with `answer`; records requests."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        from evaluation.localserver import completion_response

        self.requests.append(body)
        return completion_response(body.get("model", "?"), self.answer, 200, 20)
