"""The toxicity job: score new turns with the configured scorer, store scores, raise events.

Local scorers (lexicon, Detoxify) score every new turn in `turns`; the remote one (Perspective)
only sees the reviewable, redacted copies in `audit_turns`. A score above
`jobs.toxicity_threshold` adds a `toxicity` event (an attribute and a number, never text).
"""

from __future__ import annotations

import logging
import sqlite3

from bot.audit.state import JobResult, job_cursor, save_cursor
from bot.audit.store import BATCH_ROWS, AuditDB, keyset_page
from bot.config import Settings
from scoring.config import ToxicityConfig
from scoring.toxicity import ATTRIBUTES, Scorer, build_scorer

logger = logging.getLogger(__name__)


def build_toxicity_scorer(settings: Settings) -> Scorer:
    """The configured scorer (scoring.toxicity), built from the `jobs.toxicity_*` keys."""
    j = settings.jobs
    config = ToxicityConfig(
        scorer=j.toxicity_scorer,
        lexicon_path=str(j.toxicity_lexicon_path) if j.toxicity_lexicon_path else None,
        detoxify_checkpoint=(
            str(j.toxicity_detoxify_checkpoint) if j.toxicity_detoxify_checkpoint else None
        ),
    )
    return build_scorer(config)


UNSCORED_TURNS = (
    "SELECT id, user_key, conversation_id, role, text, created_at FROM turns "
    "WHERE created_at >= ? AND (created_at > ? OR id > ?) ORDER BY created_at, id LIMIT ?"
)
UNSCORED_AUDIT_TURNS = (  # remote scorers only see reviewable, redacted copies
    "SELECT turn_id AS id, user_key, conversation_id, role, text, created_at FROM audit_turns "
    "WHERE created_at >= ? AND (created_at > ? OR turn_id > ?) "
    "ORDER BY created_at, turn_id LIMIT ?"
)


def score_toxicity(adb: AuditDB, settings: Settings, now: float, scorer: Scorer) -> JobResult:
    """Score new user and assistant turns; store per-attribute scores; raise events."""
    job = "toxicity"
    remote = settings.jobs.toxicity_scorer == "perspective"
    query, table = (UNSCORED_AUDIT_TURNS, "audit_turns") if remote else (UNSCORED_TURNS, "turns")
    exists = f"SELECT 1 FROM {table} WHERE {'turn_id' if remote else 'id'} = ? AND created_at = ?"
    since = job_cursor(adb, job).get("since", 0.0)
    threshold = settings.jobs.toxicity_threshold
    result = JobResult(detail={"scorer": scorer.name, "events": 0, "source": table})
    mark = (since - settings.jobs.overlap_seconds if since else 0.0, -1)
    while rows := keyset_page(adb.conn, query, mark):
        done = {
            (r[0], r[1])
            for r in adb.query(
                "SELECT turn_id, created_at FROM audit_toxicity WHERE created_at >= ? "
                "AND created_at <= ?",
                [rows[0]["created_at"], rows[-1]["created_at"]],
            )
        }
        todo = [r for r in rows if (r["id"], r["created_at"]) not in done]
        scores = scorer.score([r["text"] or "" for r in todo]) if todo else []
        mark = (rows[-1]["created_at"], rows[-1]["id"])
        with adb.write() as conn:
            for row, score in zip(todo, scores, strict=True):
                if conn.execute(exists, [row["id"], row["created_at"]]).fetchone() is None:
                    result.skipped += 1  # erased (/forget) while it was being scored
                    continue
                result.items += 1
                result.detail["events"] += _store_score(conn, row, score, scorer.name, now,
                                                        threshold)  # fmt: skip
            save_cursor(conn, job, {"since": max(since, mark[0])})
        if len(rows) < BATCH_ROWS:
            break
    return result


def _store_score(
    conn: sqlite3.Connection,
    row: sqlite3.Row,
    score: dict[str, float],
    scorer: str,
    now: float,
    threshold: float,
) -> int:
    """Insert one turn's scores; an over-threshold score adds a `toxicity` event. Returns 0/1."""
    values = [float(score.get(a, 0.0)) for a in ATTRIBUTES]
    top = max(range(len(values)), key=values.__getitem__)
    inserted = conn.execute(
        "INSERT OR IGNORE INTO audit_toxicity (user_key, conversation_id, turn_id, role, "
        "created_at, scorer, toxicity, severe_toxicity, identity_attack, insult, profanity, "
        "threat, max_attribute, max_score, scored_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [row["user_key"], row["conversation_id"], row["id"], row["role"], row["created_at"],
         scorer, *values, ATTRIBUTES[top], values[top], now],
    ).rowcount  # fmt: skip
    if not inserted or values[top] <= threshold:
        return 0
    conn.execute(
        "INSERT INTO events (user_key, conversation_id, kind, category, detail, created_at) "
        "VALUES (?, ?, 'toxicity', ?, ?, ?)",
        [row["user_key"], row["conversation_id"], ATTRIBUTES[top],
         f"{row['role']} {values[top]:.2f}", row["created_at"]],
    )  # fmt: skip
    return 1
