"""The judge job (bot.audit.judge): a length-stratified sample scored by a scripted OpenAI-compatible judge on 127.0.0.1."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bot.audit.jobs import JobContext, run_job
from bot.audit.judge import stratified_sample
from tests.bot.audit.audit_data import (
    DAY,
    EMAIL,
    GOOD_JUDGE,
    NOW,
    PLATFORM_ID,
    ScriptedJudge,
    load_state_of,
    make_settings,
    populate,
    rows,
)


def test_stratified_sample_spreads_over_lengths() -> None:
    items = list(range(90))  # key = the value: strata 0-29, 30-59, 60-89
    sample = stratified_sample(items, 9, float, 3, random.Random(1))
    assert sorted(s for s, _ in sample) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(30 * s <= item < 30 * (s + 1) for s, item in sample)
    assert len({item for _, item in sample}) == 9
    assert len(stratified_sample(items, 500, float, 3, random.Random(1))) == 90
    assert stratified_sample([], 5, float, 3, random.Random(1)) == []


@pytest.fixture
async def judge_server():
    from evaluation.localserver import build_app, start

    handler = ScriptedJudge(GOOD_JUDGE)
    runner, port = await start(build_app(handler))
    handler.base_url = f"http://127.0.0.1:{port}/v1"  # type: ignore[attr-defined]
    yield handler
    await runner.cleanup()


async def test_judge_samples_by_length_and_stores_scores_with_the_model(
    db: Path, judge_server: ScriptedJudge
) -> None:
    populate(db, 90, start=NOW - 2 * DAY, end=NOW - DAY, consent_share=0.7)
    settings = make_settings(
        db, judge_base_url=judge_server.base_url, judge_model="judge-test-model",  # type: ignore[attr-defined]
        judge_conversations=6, judge_strata=3,
    )  # fmt: skip
    ctx = JobContext(settings, db, clock=lambda: NOW)
    assert (await run_job(ctx, "log-conversations")).ok
    outcome = await run_job(ctx, "judge")
    assert outcome.ok, outcome.error
    assert outcome.result is not None and outcome.result.items == 6
    stored = rows(db, "SELECT judge_model, stratum, engagement, comforting, appropriateness, "
                      "suggestion FROM audit_judgements")  # fmt: skip
    assert sorted(r[1] for r in stored) == [0, 0, 1, 1, 2, 2]
    assert {r[0] for r in stored} == {"judge-test-model"}
    assert all(r[2:] == (4.0, 5.0, 4.0, 3.0) for r in stored)
    assert len(judge_server.requests) == 6
    sent = json.dumps(judge_server.requests)
    assert EMAIL not in sent and PLATFORM_ID not in sent  # only redacted text leaves
    assert all(r["model"] == "judge-test-model" for r in judge_server.requests)
    # Nothing new since: the next run judges nothing (and asks nothing).
    again = await run_job(JobContext(settings, db, clock=lambda: NOW + 60), "judge")
    assert again.ok and again.result is not None and again.result.items == 0
    assert len(judge_server.requests) == 6


async def test_judge_failure_keeps_the_cursor_for_the_retry(
    db: Path, judge_server: ScriptedJudge
) -> None:
    populate(db, 30, start=NOW - 2 * DAY, end=NOW - DAY, consent_share=1.0)
    settings = make_settings(
        db,
        judge_base_url=judge_server.base_url,
        judge_conversations=4,  # type: ignore[attr-defined]
    )
    ctx = JobContext(settings, db, clock=lambda: NOW)
    assert (await run_job(ctx, "log-conversations")).ok
    judge_server.answer = "I would rather not give numbers."
    failed = await run_job(ctx, "judge")
    assert not failed.ok and failed.failures == 1 and "JudgeUnavailable" in (failed.error or "")
    assert load_state_of(db, "judge").cursor == {}
    judge_server.answer = GOOD_JUDGE
    retried = await run_job(ctx, "judge")
    assert retried.ok and retried.result is not None and retried.result.items == 4
    assert load_state_of(db, "judge").failures == 0
