"""The judge job: a length-stratified sample of newly reviewable conversations, scored by the
shared LLM judge (`scoring.judge`: the evaluation suite's rubric and client, a per-run budget cap).

Only the audit store is judged — conversations whose author turned `/review on`, or that were
crisis-flagged — and only its redacted text leaves the machine. Each conversation is judged at
most once; scores are stored with the judge model's name. Conversations that became reviewable
since the last run and were not drawn are not drawn later (the sample is of *new* ones).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bot.audit.state import JobResult, JobState, load_state, save_cursor
from bot.audit.store import audit_connection
from bot.config import Settings
from scoring.config import JudgeConfig
from scoring.judge import (
    CRITERIA,
    BudgetExceeded,
    DialogueJudgement,
    JudgeClient,
    judge_dialogue,
    rubric_messages,
)

Transcript = list[tuple[str, str]]
# The score columns of audit_judgements: the rubric's criteria, lower case.
CRITERIA_COLUMNS = tuple(criterion.lower() for criterion in CRITERIA)

logger = logging.getLogger(__name__)
T = TypeVar("T")

JOB = "judge"
MIN_USABLE_SHARE = 0.5  # fewer usable judgements than this: the endpoint is failing, retry later


class JudgeUnavailable(RuntimeError):
    """Most judgements failed (endpoint down, unreadable answers); the run is retried."""


@dataclass(frozen=True)
class Candidate:
    """A reviewable conversation not judged yet."""

    conversation_id: str
    user_key: str
    turns: int
    snapshot_at: float


def judge_config(settings: Settings) -> JudgeConfig:
    """The shared judge's `JudgeConfig` from the `jobs.judge_*` keys."""
    j = settings.jobs
    return JudgeConfig(
        base_url=j.judge_base_url,
        model=j.judge_model,
        api_key_env=j.judge_api_key_env,
        samples=j.judge_samples,
        budget_usd=j.judge_budget_usd,
    )


def _candidates(db_path: Path, since: float) -> list[Candidate]:
    with audit_connection(db_path) as adb:
        rows = adb.query(
            "SELECT conversation_id, user_key, turns, snapshot_at FROM audit_conversations c "
            "WHERE snapshot_at > ? AND NOT EXISTS (SELECT 1 FROM audit_judgements j "
            "WHERE j.conversation_id = c.conversation_id) ORDER BY snapshot_at",
            [since],
        )
    return [Candidate(r[0], r[1], r[2] or 0, r[3] or 0.0) for r in rows]


def _transcript(db_path: Path, conversation_id: str, max_turns: int) -> Transcript:
    """The newest `max_turns` redacted turns, oldest first, starting with the seeker."""
    with audit_connection(db_path) as adb:
        rows = adb.query(
            "SELECT role, text FROM audit_turns WHERE conversation_id = ? "
            "ORDER BY created_at DESC, turn_id DESC LIMIT ?",
            [conversation_id, max_turns],
        )
    turns = [(r[0], r[1] or "") for r in reversed(rows)]
    while turns and turns[0][0] != "user":
        turns.pop(0)
    return turns


def _store(
    db_path: Path, rows: list[dict[str, Any]], cursor: dict[str, Any] | None
) -> tuple[int, int]:
    """Insert judgements whose conversation still exists; returns (stored, gone)."""
    stored = gone = 0
    with audit_connection(db_path) as adb, adb.write() as conn:
        for row in rows:
            alive = conn.execute(
                "SELECT 1 FROM audit_conversations WHERE conversation_id = ?",
                [row["conversation_id"]],
            ).fetchone()
            if alive is None:  # erased (/forget, /review off) while it was being judged
                gone += 1
                continue
            columns = ", ".join(row)
            with_placeholders = ", ".join("?" * len(row))
            try:
                conn.execute(
                    f"INSERT INTO audit_judgements ({columns}) VALUES ({with_placeholders})",
                    list(row.values()),
                )
                stored += 1
            except sqlite3.IntegrityError:  # judged meanwhile by another process
                continue
        if cursor is not None:
            save_cursor(conn, JOB, cursor)
    return stored, gone


def _row(
    candidate: Candidate,
    stratum: int,
    turns: int,
    model: str,
    verdict: DialogueJudgement,
    now: float,
) -> dict[str, Any]:
    mean, std = verdict.mean, verdict.std
    row: dict[str, Any] = {
        "user_key": candidate.user_key, "conversation_id": candidate.conversation_id,
        "judge_model": model, "judged_at": now, "turns": turns, "stratum": stratum,
        "samples": len(verdict.samples), "errors": len(verdict.errors),
    }  # fmt: skip
    for criterion, value in mean.items():
        row[criterion.lower()] = value
        row[f"{criterion.lower()}_std"] = std.get(criterion, 0.0)
    return row


def _fit_budget(
    client: JudgeClient,
    drawn: list[tuple[int, Candidate]],
    transcripts: dict[str, Transcript],
    samples: int,
) -> int:
    """How many of the drawn conversations fit the budget (estimated before any request)."""
    budget = client.cfg.budget_usd
    total = 0.0
    for index, (_, cand) in enumerate(drawn):
        total += client.estimate_usd([rubric_messages(transcripts[cand.conversation_id])]) * samples
        if client.paid and total > budget:
            return index
    return len(drawn)


async def run_judge(
    db_path: Path, settings: Settings, now: float, *, client: JudgeClient | None = None
) -> JobResult:
    """Judge a stratified sample of new audit conversations; store scores with the model name."""
    j = settings.jobs
    state = await asyncio.to_thread(lambda: _state(db_path))
    since = float(state.cursor.get("since", 0.0))
    candidates = await asyncio.to_thread(_candidates, db_path, since)
    result = JobResult(detail={"candidates": len(candidates), "model": j.judge_model})
    if not candidates:
        return result
    rng = random.Random(f"{since}:{len(candidates)}")  # reproducible draw for a given backlog
    drawn = stratified_sample(
        candidates, j.judge_conversations, lambda c: c.turns, j.judge_strata, rng
    )
    transcripts = {
        c.conversation_id: await asyncio.to_thread(
            _transcript, db_path, c.conversation_id, j.judge_max_turns
        )
        for _, c in drawn
    }
    usable = [
        (s, c) for s, c in drawn if any(r == "assistant" for r, _ in transcripts[c.conversation_id])
    ]
    result.detail["no_reply_yet"] = len(drawn) - len(usable)
    own = client is None
    client = client or JudgeClient(judge_config(settings), cache=None)
    try:
        fits = _fit_budget(client, usable, transcripts, j.judge_samples)
        result.detail["over_budget"] = len(usable) - fits
        result.skipped = len(candidates) - fits
        verdicts: list[tuple[int, Candidate, DialogueJudgement]] = []
        for stratum, cand in usable[:fits]:
            try:
                verdict = await judge_dialogue(client, transcripts[cand.conversation_id])
            except BudgetExceeded:
                result.detail["over_budget"] += 1
                break
            verdicts.append((stratum, cand, verdict))
        result.detail["spend_usd"] = client.spend.usd
    finally:
        if own:
            await client.aclose()
    return await _finish(db_path, j.judge_model, now, verdicts, candidates, transcripts, result)


async def _finish(
    db_path: Path,
    model: str,
    now: float,
    verdicts: list[tuple[int, Candidate, DialogueJudgement]],
    candidates: list[Candidate],
    transcripts: dict[str, Transcript],
    result: JobResult,
) -> JobResult:
    rows = [
        _row(c, s, len(transcripts[c.conversation_id]), model, v, now)
        for s, c, v in verdicts
        if v.samples
    ]
    failed = len(verdicts) - len(rows)
    healthy = not verdicts or len(rows) >= MIN_USABLE_SHARE * len(verdicts)
    cursor = {"since": max(c.snapshot_at for c in candidates)} if healthy else None
    stored, gone = await asyncio.to_thread(_store, db_path, rows, cursor)
    result.items = stored
    result.detail.update({"failed": failed, "erased_meanwhile": gone})
    if not healthy:
        raise JudgeUnavailable(
            f"{failed} of {len(verdicts)} judgements failed; the cursor stays for a retry"
        )
    return result


def _state(db_path: Path) -> JobState:
    with audit_connection(db_path) as adb:
        return load_state(adb, JOB)


def stratified_sample(
    items: Sequence[T], size: int, key: Callable[[T], float], strata: int, rng: random.Random
) -> list[tuple[int, T]]:
    """Draw `size` items, spread over `strata` equal-count strata of `key` (e.g. length).

    Items are sorted by `key` and cut into contiguous strata of (nearly) equal size; each
    stratum gets its proportional share of the sample (largest remainder), drawn without
    replacement. Returns (stratum index, item) pairs, shortest stratum first.
    """
    if size <= 0 or not items:
        return []
    ordered = sorted(items, key=key)
    strata = max(1, min(strata, len(ordered)))
    bounds = [round(i * len(ordered) / strata) for i in range(strata + 1)]
    groups = [ordered[bounds[i] : bounds[i + 1]] for i in range(strata)]
    size = min(size, len(ordered))
    quotas = [size * len(g) / len(ordered) for g in groups]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(strata), key=lambda i: quotas[i] - counts[i], reverse=True)
    for i in by_remainder[: size - sum(counts)]:
        counts[i] += 1
    sample: list[tuple[int, T]] = []
    for index, (group, count) in enumerate(zip(groups, counts, strict=True)):
        sample.extend((index, item) for item in rng.sample(group, count))
    return sample
