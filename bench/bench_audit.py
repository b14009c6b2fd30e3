"""Audit benchmarks: the moderator report at scale, and whether jobs slow chats down.

1. Report: 10,000 generated conversations (quick: 2,000) over a week, snapshotted and
   toxicity-scored, plus judge scores; time to collect, render (charts) and write the HTML+JSON
   report, against a plain JSON dump of the same rows (turn metadata, events, toxicity and
   judge rows) in the same run. Target: the report renders in < 10 s.
2. Chat latency: simulated users talk to the echo backend through `Engine.respond` on a
   database of 5,000 conversations; p50/p99 reply time with every job running back to back on
   the same event loop (their own connections, worker threads) vs. with no jobs, same run.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.bot.audit.audit_data generates the conversations
    sys.path.insert(0, str(ROOT))

NOW = 1_760_000_000.0
DAY = 86_400.0
REPORT_TARGET_SECONDS = 10.0
CHAT_LINES = (
    "I have been feeling lonely since I moved here.",
    "Work is overwhelming and I dread Mondays.",
    "I keep replaying the argument with my sister.",
    "I miss my grandmother, it still hurts.",
)


def _settings(db: Path, **jobs: Any) -> Any:
    from bot.config import Settings

    return Settings(
        model={"backend": "echo", "n_ctx": 2048},
        memory={"db_path": db, "context_representation": "raw"},
        generation={"holdback_chars": 0},
        jobs={"report_dir": db.parent / "reports", **jobs},
    )


def _add_judgements(db: Path, n: int, rng: random.Random) -> None:
    from bot.audit.store import audit_connection

    with audit_connection(db) as adb, adb.write() as conn:
        ids = conn.execute(
            "SELECT conversation_id, user_key, turns FROM audit_conversations LIMIT ?", [n]
        ).fetchall()
        conn.executemany(
            "INSERT INTO audit_judgements (user_key, conversation_id, judge_model, judged_at, "
            "turns, stratum, samples, errors, engagement, comforting, appropriateness, "
            "suggestion) VALUES (?, ?, 'bench-judge', ?, ?, 0, 1, 0, ?, ?, ?, ?)",
            [(r[1], r[0], NOW - rng.uniform(0, 7 * DAY), r[2],
              *(float(rng.randint(1, 5)) for _ in range(4))) for r in ids],
        )  # fmt: skip


def _synthetic_toxicity(adb: Any) -> None:
    """One toxicity row per turn with pseudo-random scores (the report reads them the same)."""
    scores = ", ".join("(ABS(RANDOM()) % 1000) / 5000.0" for _ in range(6))
    with adb.write() as conn:
        conn.execute(
            "INSERT INTO audit_toxicity (user_key, conversation_id, turn_id, role, created_at, "
            "scorer, toxicity, severe_toxicity, identity_attack, insult, profanity, threat, "
            f"max_attribute, max_score, scored_at) SELECT user_key, conversation_id, id, role, "
            f"created_at, 'synthetic', {scores}, 'toxicity', (ABS(RANDOM()) % 1000) / 1000.0, "
            "created_at FROM turns"
        )


def _raw_dump(db: Path, out: Path, start: float, end: float) -> float:
    """Baseline: read the same rows the report summarises and write them as plain JSON."""
    from bot.audit.store import audit_connection

    began = time.perf_counter()
    queries = {
        "turns": "SELECT user_key, conversation_id, role, created_at FROM turns",
        "events": "SELECT user_key, conversation_id, kind, category, created_at FROM events",
        "toxicity": "SELECT * FROM audit_toxicity",
        "judgements": "SELECT * FROM audit_judgements",
    }
    with audit_connection(db) as adb:
        data = {
            name: [dict(r) for r in adb.query(f"{sql} WHERE 1 = 1", [])]
            for name, sql in queries.items()
        }
    out.write_text(json.dumps({"start": start, "end": end, **data}))
    return time.perf_counter() - began


def bench_report(quick: bool, tmp: Path) -> list[str]:
    """Section 1: the report for N conversations vs a plain JSON dump."""
    from bot.audit.log_conversations import log_conversations
    from bot.audit.report.build import collect_report, write_report
    from bot.audit.report.render import render_html
    from bot.audit.store import audit_connection
    from bot.audit.toxicity import build_toxicity_scorer, score_toxicity
    from tests.bot.audit.audit_data import populate

    n = 2_000 if quick else 10_000
    db = tmp / "report.db"
    pop = populate(db, n, start=NOW - 7 * DAY, end=NOW)
    settings = _settings(db)
    prep = time.perf_counter()
    with audit_connection(db) as adb:
        log_conversations(adb, settings, NOW)
        if quick:  # the real scorer on every turn (its cost is shown in the table)
            score_toxicity(adb, settings, NOW, build_toxicity_scorer(settings))
        else:  # 90k turns through the lexicon take ~25 s here: synthetic scores instead
            _synthetic_toxicity(adb)
    prep = time.perf_counter() - prep
    _add_judgements(db, max(50, n // 20), random.Random(3))
    dump_s = _raw_dump(db, tmp / "dump.json", NOW - 7 * DAY, NOW)
    t0 = time.perf_counter()
    with audit_connection(db) as adb:
        data = collect_report(adb, settings, NOW - 7 * DAY, NOW, "weekly")
    t1 = time.perf_counter()
    page = render_html(data)
    t2 = time.perf_counter()
    html_path, _ = write_report(data, tmp / "reports", page)
    total = time.perf_counter() - t0
    verdict = "meets" if total < REPORT_TARGET_SECONDS else "MISSES"
    return [
        f"### Report for {n:,} conversations ({pop.turns:,} turns, one week)",
        "",
        "| step | seconds |",
        "| --- | ---: |",
        f"| snapshot + toxicity-score every turn ({'lexicon' if quick else 'synthetic scores'})"
        f" | {prep:.2f} |",
        f"| collect the report's data (SQL) | {t1 - t0:.2f} |",
        f"| render HTML with {sum(1 for _ in page.split('data:image/png')) - 1} charts | "
        f"{t2 - t1:.2f} |",
        f"| **report total (collect + render + write)** | **{total:.2f}** |",
        f"| baseline: plain JSON dump of the same rows | {dump_s:.2f} |",
        "",
        f"Report / plain dump: **{total / dump_s:.2f}x**. Target < {REPORT_TARGET_SECONDS:.0f} s: "
        f"{verdict}. HTML {html_path.stat().st_size / 1024:.0f} KiB with "
        f"{len(data['flagged'])} flagged conversations listed.",
        "",
    ]


async def _chat_load(engine: Any, users: int, per_user: int) -> list[float]:
    """Reply times (s) of `users` people each sending `per_user` messages, all at once."""
    from bot.messages import IncomingMessage

    times: list[float] = []

    async def person(uid: int) -> None:
        for k in range(per_user):
            msg = IncomingMessage("telegram", f"bench-{uid}", CHAT_LINES[(uid + k) % 4])
            began = time.perf_counter()
            async for _ in engine.respond(msg):
                pass
            times.append(time.perf_counter() - began)
            await asyncio.sleep(0.005)  # a person does not type instantly

    await asyncio.gather(*(person(u) for u in range(users)))
    return times


async def _jobs_forever(ctx: Any, stop: asyncio.Event, runs: list[str]) -> None:
    from bot.audit.jobs import run_job

    cycle = ("log-conversations", "toxicity", "retention", "report")
    while not stop.is_set():
        for name in cycle:
            kwargs = {"period": "weekly"} if name == "report" else {}
            outcome = await run_job(ctx, name, **kwargs)
            runs.append(f"{name}:{'ok' if outcome.ok else outcome.error}")
            if stop.is_set():
                return


async def _latency(quick: bool, tmp: Path) -> dict[str, Any]:
    from bot.audit.jobs import JobContext, worker_pool
    from bot.engine import build_engine
    from bot.memory import open_memory
    from tests.bot.audit.audit_data import SECRET, populate

    base = tmp / "chat-base.db"
    populate(base, 1_000 if quick else 5_000, start=NOW - 7 * DAY, end=time.time())
    users, per_user = (20, 5) if quick else (40, 10)
    out: dict[str, Any] = {}
    for label in ("without", "process", "thread"):  # each on a fresh copy: the same backlog
        db = tmp / f"chat-{label}.db"
        shutil.copy(base, db)
        settings = _settings(db)
        memory = open_memory(db, SECRET)
        engine = build_engine(settings, memory=memory)
        await _chat_load(engine, 5, 2)  # warm-up
        stop, runs = asyncio.Event(), list[str]()
        ctx = JobContext(settings, db, executor=worker_pool() if label == "process" else None)
        jobs = None
        if label != "without":
            jobs = asyncio.create_task(_jobs_forever(ctx, stop, runs))
            await asyncio.sleep(1.5 if ctx.executor else 0.2)  # under way (worker spawned)
        out[label] = await _chat_load(engine, users, per_user)
        stop.set()
        if jobs is not None:
            await jobs
        ctx.close()
        out[f"{label}_runs"] = runs
        memory.db.close()
    return out


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def bench_latency(quick: bool, tmp: Path) -> list[str]:
    """Section 2: p50/p99 reply time with and without jobs."""
    result = asyncio.run(_latency(quick, tmp))
    w = result["without"]
    p99w = _pct(w, 99)
    lines = [
        f"### Chat latency with jobs running ({len(w)} replies each, echo backend)",
        "",
        "| jobs | p50 ms | p99 ms | p99 / no jobs | job runs meanwhile |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| none (baseline) | {_pct(w, 50) * 1000:.1f} | {p99w * 1000:.1f} | 1.00x | 0 |",
    ]
    names = {"process": "in the worker process (default)", "thread": "in threads "
             "(`worker_process = false`)"}  # fmt: skip
    for label, name in names.items():
        times, runs = result[label], result[f"{label}_runs"]
        failed = sum(1 for r in runs if not r.endswith(":ok"))
        lines.append(
            f"| {name} | {_pct(times, 50) * 1000:.1f} | {_pct(times, 99) * 1000:.1f} | "
            f"**{_pct(times, 99) / p99w:.2f}x** | {len(runs)} ({failed} failed) |"
        )
    return [*lines, ""]


def run(quick: bool) -> str:
    """The Markdown section for BENCHMARKS.md."""
    with tempfile.TemporaryDirectory() as tmp:
        lines = ["## Audits (bench/bench_audit.py)", ""]
        lines += bench_report(quick, Path(tmp))
        lines += bench_latency(quick, Path(tmp))
    return "\n".join(lines)


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
