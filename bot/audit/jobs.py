"""Scheduled jobs: thin coroutines over the audit store, and the APScheduler that runs them.

`build_scheduler(engine, memory, settings)` returns an unstarted APScheduler 3.x
`AsyncIOScheduler`; `solace serve` starts it on the bot's event loop. Every job is also a plain
coroutine (`await run_job(ctx, "toxicity")`), which `solace audit run JOB` and the tests call.

Guarantees (docs/audits.md): a job never runs twice at once (APScheduler `max_instances=1`, an
`asyncio.Lock` per job, and a lease row in SQLite against a second process such as the CLI); a
missed run is caught up once (`coalesce=True`, `misfire_grace_time`, and at start-up one run for
a job whose schedule fired since its last success); a failing run is logged, recorded in
`job_runs` and retried with exponential backoff; the database work runs in worker threads on the
jobs' own connections, so chats keep their event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.audit.names import JOB_NAMES, SCHEDULES
from bot.audit.state import (
    JobResult,
    acquire_lease,
    load_state,
    record_run,
    release_lease,
)
from bot.audit.store import audit_connection, database_file
from bot.config import Settings
from bot.errors import ConfigError

logger = logging.getLogger(__name__)

MAX_RETRY_DELAY_SECONDS = 3600.0


@dataclass
class JobContext:
    """What every job needs: the settings, the database file, a clock, a lease owner id."""

    settings: Settings
    db_path: Path
    clock: Callable[[], float] = time.time
    owner: str = field(default_factory=lambda: f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    judge_client: Any = None  # injected by tests; None = built from settings per run
    executor: Executor | None = None  # a worker process for CPU work; None = a thread here

    def close(self) -> None:
        """Stop the worker process, if any."""
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class RunOutcome:
    """How one attempt ended: ok, skipped because busy, or failed (error type and message)."""

    job: str
    ok: bool
    result: JobResult | None = None
    error: str | None = None
    busy: bool = False
    failures: int = 0


# --- the jobs (thin) -------------------------------------------------------------------------


async def log_conversations(ctx: JobContext) -> JobResult:
    """Copy reviewable turns written since the last run into the audit store (redacted)."""
    return await _offload(ctx, run_task, "log-conversations", ctx.db_path, ctx.settings,
                          ctx.clock())  # fmt: skip


async def toxicity(ctx: JobContext) -> JobResult:
    """Score new turns with the configured scorer; events above the threshold."""
    return await _offload(ctx, run_task, "toxicity", ctx.db_path, ctx.settings, ctx.clock())


async def judge(ctx: JobContext) -> JobResult:
    """LLM-judge a length-stratified sample of new reviewable conversations."""
    from bot.audit.judge import run_judge

    return await run_judge(ctx.db_path, ctx.settings, ctx.clock(), client=ctx.judge_client)


async def retention(ctx: JobContext) -> JobResult:
    """Purge turns, events and audit rows past their retention."""
    return await _offload(ctx, run_task, "retention", ctx.db_path, ctx.settings, ctx.clock())


async def report(ctx: JobContext, period: str = "daily") -> JobResult:
    """Write the moderator report (HTML + JSON) and post it where configured."""
    from bot.audit.report.build import PERIOD_SECONDS, build_report, report_dir, summary_text
    from bot.audit.report.post import post_report

    now = ctx.clock()
    out = report_dir(ctx.settings, ctx.db_path)
    data, paths = await _offload(ctx, build_report, ctx.db_path, ctx.settings,
                                 now - PERIOD_SECONDS[period], now, period, out)  # fmt: skip
    posted = await post_report(ctx.settings, summary_text(data), paths[0])
    return JobResult(items=1, detail={"html": str(paths[0]), "posted": posted})


JOBS: dict[str, Callable[..., Awaitable[JobResult]]] = {
    "log-conversations": log_conversations,
    "judge": judge,
    "toxicity": toxicity,
    "retention": retention,
    "report": report,
}


def run_task(task: str, db_path: Path, settings: Settings, now: float) -> JobResult:
    """The synchronous work of a job (module-level, so a worker process can run it)."""
    from bot.audit.log_conversations import log_conversations
    from bot.audit.retention import purge_expired
    from bot.audit.toxicity import build_toxicity_scorer, score_toxicity

    with audit_connection(db_path) as adb:
        if task == "log-conversations":
            return log_conversations(adb, settings, now)
        if task == "toxicity":
            return score_toxicity(adb, settings, now, build_toxicity_scorer(settings))
        if task == "retention":
            return purge_expired(adb, settings, now)
    raise ValueError(f"no synchronous task {task!r}")


WORKER_NICENESS = 19  # the lowest priority: the OS runs the bot first whenever both want the CPU


def _lower_priority() -> None:
    with contextlib.suppress(OSError):  # not permitted here: run at normal priority
        os.nice(WORKER_NICENESS)


def worker_pool() -> ProcessPoolExecutor:
    """One spawned, low-priority worker process (spawn: never fork a process holding a model)."""
    return ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_lower_priority
    )


async def _offload(ctx: JobContext, fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn(*args)` in the worker process, or in a thread when there is none."""
    if ctx.executor is None:
        return await asyncio.to_thread(fn, *args)
    try:
        return await asyncio.get_running_loop().run_in_executor(ctx.executor, fn, *args)
    except BrokenProcessPool:
        ctx.executor = worker_pool()  # the worker died (e.g. killed): the retry gets a new one
        raise


# --- one run, with lock, lease and bookkeeping -----------------------------------------------


def state_key(name: str, kwargs: dict[str, Any]) -> str:
    """The job_state row of a run: "report:weekly" for the weekly report, else the name."""
    return f"{name}:{kwargs['period']}" if name == "report" and "period" in kwargs else name


async def run_job(ctx: JobContext, name: str, **kwargs: Any) -> RunOutcome:
    """Run one job once (never twice at once); record it; never raises for a job failure."""
    if name not in JOBS:
        raise ValueError(f"unknown job {name!r}; choose from {', '.join(JOB_NAMES)}")
    key = state_key(name, kwargs)
    lock = ctx.locks.setdefault(key, asyncio.Lock())
    if lock.locked():
        logger.info("job %s: still running, this run is skipped", key)
        return RunOutcome(key, ok=False, busy=True)
    async with lock:
        started = ctx.clock()
        if not await _db(ctx, acquire_lease, key, ctx.owner, started, _lease(ctx)):
            logger.warning("job %s: another process holds its lease; skipped", key)
            return RunOutcome(key, ok=False, busy=True)
        try:
            return await _attempt(ctx, name, key, started, kwargs)
        finally:
            await _db(ctx, release_lease, key, ctx.owner)


async def _attempt(
    ctx: JobContext, name: str, key: str, started: float, kwargs: dict[str, Any]
) -> RunOutcome:
    try:
        result = await JOBS[name](ctx, **kwargs)
    except Exception as exc:  # the scheduler's boundary: log, record, retry later
        logger.exception("job %s failed", key)
        error = f"{type(exc).__name__}: {exc}"
        failures = await _db(ctx, record_run, key, started, ctx.clock(), None, error)
        return RunOutcome(key, ok=False, error=error, failures=failures)
    await _db(ctx, record_run, key, started, ctx.clock(), result, None)
    logger.info(
        "job %s: %d items, %d skipped in %.2fs", key, result.items, result.skipped,
        ctx.clock() - started,
    )  # fmt: skip
    return RunOutcome(key, ok=True, result=result)


def _lease(ctx: JobContext) -> float:
    return float(ctx.settings.jobs.lease_seconds)


async def _db(ctx: JobContext, fn: Callable[..., Any], *args: Any) -> Any:
    def run() -> Any:
        with audit_connection(ctx.db_path) as adb:
            return fn(adb, *args)

    return await asyncio.to_thread(run)


# --- the scheduler ---------------------------------------------------------------------------


def retry_delay(failures: int, base_seconds: float) -> float:
    """Exponential backoff: base, 2×base, 4×base, … capped at an hour."""
    return min(base_seconds * 2 ** max(failures - 1, 0), MAX_RETRY_DELAY_SECONDS)


class JobRunner:
    """Runs jobs for the scheduler: retries failures with backoff, catches up missed runs."""

    def __init__(self, ctx: JobContext, scheduler: Any, triggers: dict[str, Any]) -> None:
        self.ctx = ctx
        self.scheduler = scheduler
        self.triggers = triggers

    async def scheduled(self, job_id: str) -> RunOutcome:
        """Run a scheduled job (or its retry); on failure schedule the next retry."""
        name, kwargs = _split(job_id)
        outcome = await run_job(self.ctx, name, **kwargs)
        j = self.ctx.settings.jobs
        if not outcome.ok and not outcome.busy and outcome.failures <= j.retry_max:
            delay = retry_delay(outcome.failures, j.retry_base_seconds)
            when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
            self.scheduler.add_job(
                self.scheduled, "date", run_date=when, args=[job_id], id=f"{job_id}:retry",
                replace_existing=True, misfire_grace_time=None,
            )  # fmt: skip
            logger.warning("job %s: retry %d in %.0fs", job_id, outcome.failures, delay)
        return outcome

    async def catch_up(self) -> list[str]:
        """At start-up: run once each job whose schedule fired since its last success."""
        missed = []
        now = dt.datetime.now(dt.UTC)
        for job_id, trigger in self.triggers.items():
            name, kwargs = _split(job_id)
            state = await _db(self.ctx, load_state, state_key(name, kwargs))
            if state.last_success_at is None:
                continue  # never ran: wait for the schedule
            last = dt.datetime.fromtimestamp(state.last_success_at, dt.UTC)
            due = trigger.get_next_fire_time(None, last)
            if due is not None and due < now:
                missed.append(job_id)
        for job_id in missed:
            logger.warning("job %s: missed while the bot was down; running it once", job_id)
            await self.scheduled(job_id)
        return missed


def _split(job_id: str) -> tuple[str, dict[str, Any]]:
    if job_id.startswith("report-"):
        return "report", {"period": job_id.removeprefix("report-")}
    return job_id, {}


def build_triggers(settings: Settings) -> dict[str, Any]:
    """job id -> CronTrigger for every enabled job; a bad cron line is a ConfigError naming it."""
    from apscheduler.triggers.cron import CronTrigger

    triggers = {}
    for job_id, key in SCHEDULES.items():
        line = getattr(settings.jobs, key).strip()
        if not line:
            continue
        try:
            triggers[job_id] = CronTrigger.from_crontab(line, timezone=settings.jobs.timezone)
        except (ValueError, LookupError) as exc:
            raise ConfigError(f"jobs.{key} = {line!r} is not a valid schedule: {exc}") from exc
    return triggers


def build_scheduler(
    engine: Any, memory: Any, settings: Settings, *, clock: Callable[[], float] = time.time
) -> Any:
    """An unstarted AsyncIOScheduler with every enabled job (none when `jobs.enabled` is off)."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    j = settings.jobs
    scheduler = AsyncIOScheduler(
        timezone=j.timezone,
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": j.misfire_grace_seconds},
    )  # fmt: skip
    if not j.enabled:
        return scheduler
    ctx = JobContext(settings, database_file(memory.db), clock=clock)
    if j.worker_process:
        from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN

        ctx.executor = worker_pool()
        scheduler.add_listener(lambda _: ctx.close(), EVENT_SCHEDULER_SHUTDOWN)
    triggers = build_triggers(settings)
    runner = JobRunner(ctx, scheduler, triggers)
    for job_id, trigger in triggers.items():
        scheduler.add_job(runner.scheduled, trigger, args=[job_id], id=job_id, name=job_id)
    if triggers:
        scheduler.add_job(runner.catch_up, "date", id="catch-up", misfire_grace_time=None)
    scheduler.solace_runner = runner  # for tests and `solace audit status`
    return scheduler
