"""The run store: one SQLite file (WAL) per run directory, the single source of truth.

It holds the response cache (keyed by a hash of the whole request), the dialogue slots of each
round and every attempt at them with its outcome, the candidates waiting for review and their
decisions, and counters (HTTP retries, fallbacks). An answer is stored in the same transaction
as its outcome and candidate, so a crash loses at most the requests in flight, and a rerun
continues where the last one stopped without paying twice. The text of an answer the safety
gate rejects is never written.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

SlotStatus = Literal["pending", "done", "failed"]
ReviewStatus = Literal["pending", "accepted", "edited", "rejected"]
OUTPUT_STATUSES: tuple[ReviewStatus, ...] = ("accepted", "edited")
# Answers rejected for these reasons are never written to disk, not even in the cache.
WITHHELD_REASONS = ("unsafe_supporter", "seeker_crisis")
BUSY_TIMEOUT_SECONDS = 30

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, answer TEXT NOT NULL, finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    usage_estimated INTEGER NOT NULL, usd REAL NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS slots (
    round INTEGER NOT NULL, scenario TEXT NOT NULL, slot INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', candidate_id TEXT,
    PRIMARY KEY (round, scenario, slot));
CREATE TABLE IF NOT EXISTS attempts (
    round INTEGER NOT NULL, scenario TEXT NOT NULL, slot INTEGER NOT NULL, attempt INTEGER NOT NULL,
    response_key TEXT NOT NULL, seed_id TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT,
    detail TEXT, repairs TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (round, scenario, slot, attempt));
CREATE TABLE IF NOT EXISTS candidates (
    id TEXT PRIMARY KEY, round INTEGER NOT NULL, scenario TEXT NOT NULL, slot INTEGER NOT NULL,
    seed_id TEXT NOT NULL, record TEXT NOT NULL, generated TEXT NOT NULL, repairs TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', note TEXT, reviewed REAL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    round INTEGER NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (round, name));
"""


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An answer from the cache (or just received), with its token counts and cost."""

    answer: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    usage_estimated: bool
    usd: float


@dataclass(frozen=True, slots=True)
class Slot:
    """One dialogue to produce: round, scenario name, index within the scenario."""

    round: int
    scenario: str
    slot: int
    status: SlotStatus


@dataclass(frozen=True, slots=True)
class Candidate:
    """A dialogue that passed every gate, and its review state."""

    id: str
    round: int
    scenario: str
    slot: int
    seed_id: str
    record: dict[str, Any]
    generated: dict[str, Any]
    repairs: dict[str, int]
    status: ReviewStatus
    note: str | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one answer to one slot."""

    slot: Slot
    attempt: int
    response_key: str
    seed_id: str
    reason: str | None
    detail: str
    repairs: Counter[str]


class RunStore:
    """The SQLite file of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_SECONDS)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    # --- meta --------------------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        """A JSON value stored under `key`, or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under `key`."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    # --- response cache ----------------------------------------------------------------------
    def cached(self, key: str) -> CachedAnswer | None:
        """The stored answer for a request hash, or None."""
        row = self._db.execute(
            "SELECT answer, finish_reason, prompt_tokens, completion_tokens, usage_estimated, usd "
            "FROM responses WHERE key = ?",
            (key,),
        ).fetchone()
        return CachedAnswer(row[0], row[1], row[2], row[3], bool(row[4]), row[5]) if row else None

    def _put_response(self, key: str, model: str, answer: CachedAnswer) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, model, answer.answer, answer.finish_reason, answer.prompt_tokens,
             answer.completion_tokens, int(answer.usage_estimated), answer.usd, time.time()),
        )  # fmt: skip

    def spend(self, keys: list[str] | None = None) -> dict[str, float]:
        """Requests, tokens and USD paid so far (all answers, or those with these keys)."""
        query = (
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),"
            " COALESCE(SUM(usd), 0), COALESCE(SUM(usage_estimated), 0) FROM responses"
        )
        if keys is None:
            row = self._db.execute(query).fetchone()
        else:
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (key TEXT PRIMARY KEY)")
            with self._db:
                self._db.execute("DELETE FROM wanted")
                self._db.executemany(
                    "INSERT OR IGNORE INTO wanted VALUES (?)", [(k,) for k in keys]
                )
            row = self._db.execute(query + " WHERE key IN (SELECT key FROM wanted)").fetchone()
        return {"requests": row[0], "prompt_tokens": row[1], "completion_tokens": row[2],
                "usd": row[3], "usage_estimated": row[4]}  # fmt: skip

    # --- slots and attempts --------------------------------------------------------------------
    def ensure_slots(self, round_no: int, scenarios: list[str], per_scenario: int) -> None:
        """Create the round's slots that do not exist yet (a larger target adds slots)."""
        rows = [(round_no, s, i) for s in scenarios for i in range(per_scenario)]
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO slots (round, scenario, slot) VALUES (?, ?, ?)", rows
            )

    def slots(self, round_no: int) -> list[Slot]:
        """Every slot of a round."""
        rows = self._db.execute(
            "SELECT round, scenario, slot, status FROM slots WHERE round = ? ORDER BY rowid",
            (round_no,),
        ).fetchall()
        return [Slot(*row) for row in rows]

    def attempts_made(self, slot: Slot) -> int:
        """How many answers this slot has had judged."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM attempts WHERE round = ? AND scenario = ? AND slot = ?",
            (slot.round, slot.scenario, slot.slot),
        ).fetchone()
        return int(row[0])

    def record_attempt(
        self,
        attempt: Attempt,
        candidate: tuple[str, dict[str, Any]] | None,
        slot_status: SlotStatus,
        response: tuple[str, CachedAnswer] | None = None,
    ) -> None:
        """In one transaction: a new answer (model, answer) for the cache, the attempt's
        outcome, its candidate (id, record) if any, and the slot's new status. The text of an
        answer rejected by the safety gate is withheld: only its tokens and cost are kept."""
        s = attempt.slot
        outcome = "candidate" if candidate else "rejected"
        now = time.time()
        with self._db:
            if response is not None:
                model, answer = response
                if attempt.reason in WITHHELD_REASONS:
                    answer = replace(answer, answer=f"[withheld: {attempt.reason}]")
                self._put_response(attempt.response_key, model, answer)
            self._db.execute(
                "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (s.round, s.scenario, s.slot, attempt.attempt, attempt.response_key,
                 attempt.seed_id, outcome, attempt.reason, attempt.detail,
                 json.dumps(dict(attempt.repairs)), now),
            )  # fmt: skip
            if candidate is not None:
                cid, record = candidate
                text = json.dumps(record, ensure_ascii=False)
                self._db.execute(
                    "INSERT OR REPLACE INTO candidates (id, round, scenario, slot, seed_id, record,"
                    " generated, repairs, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (cid, s.round, s.scenario, s.slot, attempt.seed_id, text, text,
                     json.dumps(dict(attempt.repairs)), now),
                )  # fmt: skip
            self._db.execute(
                "UPDATE slots SET status = ?, candidate_id = ? WHERE round = ? AND scenario = ? "
                "AND slot = ?",
                (slot_status, candidate[0] if candidate else None, s.round, s.scenario, s.slot),
            )

    def attempt_rows(self, round_no: int) -> list[dict[str, Any]]:
        """Every attempt of a round: outcome, reason, detail, repairs, response key."""
        rows = self._db.execute(
            "SELECT scenario, slot, attempt, response_key, seed_id, outcome, reason, detail, "
            "repairs FROM attempts WHERE round = ? ORDER BY scenario, slot, attempt",
            (round_no,),
        ).fetchall()
        keys = ("scenario", "slot", "attempt", "response_key", "seed_id", "outcome", "reason",
                "detail", "repairs")  # fmt: skip
        return [dict(zip(keys, row, strict=True)) | {"repairs": json.loads(row[8])} for row in rows]

    def rounds(self) -> list[int]:
        """Rounds that have slots, in order."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT round FROM slots ORDER BY round")]

    # --- counters ----------------------------------------------------------------------------
    def bump(self, round_no: int, name: str, n: int = 1) -> None:
        """Add `n` to a round's counter."""
        with self._db:
            self._db.execute(
                "INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT (round, name) "
                "DO UPDATE SET value = value + excluded.value",
                (round_no, name, n),
            )

    def counters(self, round_no: int) -> dict[str, int]:
        """A round's counters."""
        rows = self._db.execute(
            "SELECT name, value FROM counters WHERE round = ? ORDER BY name", (round_no,)
        )
        return {name: value for name, value in rows}

    # --- candidates and review ---------------------------------------------------------------
    def candidates(
        self, round_no: int | None = None, statuses: tuple[ReviewStatus, ...] | None = None
    ) -> list[Candidate]:
        """Candidates in creation order, optionally of one round and some review statuses."""
        query = (
            "SELECT id, round, scenario, slot, seed_id, record, generated, repairs, status, note "
            "FROM candidates"
        )
        where: list[str] = []
        args: list[object] = []
        if round_no is not None:
            where.append("round = ?")
            args.append(round_no)
        if statuses is not None:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        if where:
            query += " WHERE " + " AND ".join(where)
        rows = self._db.execute(query + " ORDER BY round, created, id", args).fetchall()
        return [
            Candidate(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]),
                      json.loads(r[7]), r[8], r[9])
            for r in rows
        ]  # fmt: skip

    def decide(
        self,
        candidate_id: str,
        status: ReviewStatus,
        *,
        record: dict[str, Any] | None = None,
        note: str | None = None,
    ) -> None:
        """Set a candidate's review status (and its edited record)."""
        with self._db:
            cursor = self._db.execute(
                "UPDATE candidates SET status = ?, note = ?, reviewed = ?, "
                "record = COALESCE(?, record) WHERE id = ?",
                (status, note, time.time(),
                 json.dumps(record, ensure_ascii=False) if record is not None else None,
                 candidate_id),
            )  # fmt: skip
        if cursor.rowcount != 1:
            raise KeyError(f"no candidate {candidate_id!r}")
