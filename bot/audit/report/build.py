"""The moderator report: what the live bot said over a period, as JSON data and one HTML page.

`collect_report(adb, settings, start, end)` gathers counts only from the live tables and, for
flagged conversations, redacted excerpts from the audit store; `publish_report` renders it
(`bot.audit.report.render`), writes `<out>/solace-report-<period>-<time>.html` and `.json`, and posts
a counts-only summary (plus the HTML file) to the moderator chat when configured. Pseudonymous
keys are shortened to 12 hex characters; platform ids never reach the report.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import json
import logging
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.audit.judge import CRITERIA_COLUMNS
from bot.audit.names import STATE_ROWS
from bot.audit.report.flagged import flagged_conversations, iso
from bot.audit.state import load_state
from bot.audit.store import AuditDB, audit_connection
from bot.config import Settings
from scoring.toxicity import ATTRIBUTES

logger = logging.getLogger(__name__)

PERIOD_SECONDS = {"daily": 86_400, "weekly": 7 * 86_400}
HOURLY_UP_TO_SECONDS = 2 * 86_400
QUARTER_SECONDS = 900


class Buckets:
    """Calendar buckets over [start, end) in a time zone: hours up to two days, else days.

    A day is a calendar day in `timezone` (midnight to midnight, 23 or 25 hours on a daylight
    saving change), so a message sent on 6 December is drawn on 6 December wherever the period
    starts. SQL groups rows by quarter hour from the first boundary (every zone's offset is a
    multiple of 15 minutes, so a quarter never straddles two buckets); `bucket_of_quarter` maps
    quarters to buckets.
    """

    def __init__(self, start: float, end: float, timezone: str = "UTC") -> None:
        self.start, self.end = start, end
        self.zone = ZoneInfo(timezone)
        self.hourly = end - start <= HOURLY_UP_TO_SECONDS
        self.bounds = self._bounds()
        self.count = len(self.bounds) - 1

    def _bounds(self) -> list[float]:
        first = dt.datetime.fromtimestamp(self.start, self.zone)
        if self.hourly:
            t = first.replace(minute=0, second=0, microsecond=0).timestamp()
            bounds = [t]
            while bounds[-1] < self.end:
                bounds.append(bounds[-1] + 3600)
            return bounds if len(bounds) > 1 else [t, t + 3600]
        day = first.date()
        bounds = [dt.datetime.combine(day, dt.time(0), self.zone).timestamp()]
        while bounds[-1] < self.end or len(bounds) < 2:
            day += dt.timedelta(days=1)
            bounds.append(dt.datetime.combine(day, dt.time(0), self.zone).timestamp())
        return bounds

    def index(self, t: float) -> int:
        """The bucket holding time `t` (clamped)."""
        return min(max(bisect.bisect_right(self.bounds, t) - 1, 0), self.count - 1)

    def labels(self) -> list[str]:
        """Bucket start times in the zone, short."""
        fmt = "%m-%d %H:00" if self.hourly else "%Y-%m-%d"
        return [dt.datetime.fromtimestamp(b, self.zone).strftime(fmt) for b in self.bounds[:-1]]

    def sql(self) -> str:
        """SQL expression of the quarter hour of a `created_at`-like column `{t}`."""
        return f"CAST(({{t}} - {self.bounds[0]!r}) / {QUARTER_SECONDS} AS INTEGER)"

    def bucket_of_quarter(self, quarter: int) -> int:
        """The bucket of quarter-hour number `quarter` (from `sql()`)."""
        return self.index(self.bounds[0] + quarter * QUARTER_SECONDS)


def _activity(adb: AuditDB, start: float, end: float, b: Buckets) -> dict[str, Any]:
    span = "created_at >= ? AND created_at < ?"
    roles: dict[str, int] = {
        r[0]: r[1]
        for r in adb.query(
            f"SELECT role, COUNT(*) FROM turns WHERE {span} GROUP BY role", [start, end]
        )
    }
    series = [0] * b.count
    for quarter, n in adb.query(
        f"SELECT {b.sql().format(t='created_at')} AS k, COUNT(*) FROM turns WHERE {span} "
        "GROUP BY k",
        [start, end],
    ):
        series[b.bucket_of_quarter(quarter)] += n
    return {
        "users_active": adb.scalar(f"SELECT COUNT(DISTINCT user_key) FROM turns WHERE {span}",
                                   [start, end]),
        "users_new": adb.scalar(f"SELECT COUNT(*) FROM users WHERE {span}", [start, end]),
        "conversations": adb.scalar(
            f"SELECT COUNT(DISTINCT conversation_id) FROM turns WHERE {span}", [start, end]),
        "messages_user": roles.get("user", 0),
        "messages_assistant": roles.get("assistant", 0),
        "users_consenting": adb.scalar(
            "SELECT COUNT(*) FROM users WHERE review_consent_at IS NOT NULL"),
        "conversations_reviewable": adb.scalar(
            "SELECT COUNT(*) FROM audit_conversations WHERE last_at >= ? AND last_at < ?",
            [start, end]),
        "messages_series": series,
    }  # fmt: skip


def _events(adb: AuditDB, start: float, end: float, b: Buckets) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("crisis", "concern", "guard", "toxicity", "backend_error"):
        out[kind] = {"total": 0, "by_category": {}, "series": {}}
    for kind, category, t in adb.query(
        "SELECT kind, category, created_at FROM events WHERE created_at >= ? AND created_at < ?",
        [start, end],
    ):
        block = out.setdefault(kind, {"total": 0, "by_category": {}, "series": {}})
        name = category or "unspecified"
        block["total"] += 1
        block["by_category"][name] = block["by_category"].get(name, 0) + 1
        block["series"].setdefault(name, [0] * b.count)[b.index(t)] += 1
    return out


def _toxicity(adb: AuditDB, settings: Settings, start: float, end: float, b: Buckets) -> Any:
    attrs = ", ".join(f"AVG({a})" for a in ATTRIBUTES)
    threshold = settings.jobs.toxicity_threshold
    out: dict[str, Any] = {"threshold": threshold, "scorers": [
        r[0] for r in adb.query("SELECT DISTINCT scorer FROM audit_toxicity WHERE "
                                "created_at >= ? AND created_at < ?", [start, end])]}  # fmt: skip
    # Per quarter hour, each attribute's count and sum (NULLs left out, as AVG does), folded
    # into the calendar buckets and averaged there.
    sums = ", ".join(f"COUNT({a}), SUM({a})" for a in ATTRIBUTES)
    for role in ("user", "assistant"):
        n = {a: [0] * b.count for a in ATTRIBUTES}
        acc = {a: [0.0] * b.count for a in ATTRIBUTES}
        rows = adb.query(
            f"SELECT {b.sql().format(t='created_at')} AS k, {sums} FROM audit_toxicity "
            "WHERE role = ? AND created_at >= ? AND created_at < ? GROUP BY k",
            [role, start, end],
        )
        for row in rows:
            k = b.bucket_of_quarter(row[0])
            for i, a in enumerate(ATTRIBUTES):
                n[a][k] += row[2 * i + 1]
                acc[a][k] += row[2 * i + 2] or 0.0
        series = {a: [acc[a][k] / n[a][k] if n[a][k] else None for k in range(b.count)]
                  for a in ATTRIBUTES}  # fmt: skip
        total = adb.query(
            f"SELECT COUNT(*), SUM(max_score > ?), {attrs} FROM audit_toxicity "
            "WHERE role = ? AND created_at >= ? AND created_at < ?",
            [threshold, role, start, end],
        )[0]
        out[role] = {
            "scored": total[0], "over_threshold": total[1] or 0,
            "mean": {a: total[i + 2] for i, a in enumerate(ATTRIBUTES)},
            "series": series,
        }  # fmt: skip
    return out


def _judge(adb: AuditDB, start: float, end: float, b: Buckets) -> dict[str, Any]:
    cols = ", ".join(CRITERIA_COLUMNS)
    rows = adb.query(
        f"SELECT judge_model, judged_at, {cols} FROM audit_judgements "
        "WHERE judged_at >= ? AND judged_at < ?",
        [start, end],
    )
    per_bucket: dict[str, list[list[float]]] = {
        c: [[] for _ in range(b.count)] for c in CRITERIA_COLUMNS
    }
    overall: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for i, c in enumerate(CRITERIA_COLUMNS):
            if row[i + 2] is not None:
                per_bucket[c][b.index(row[1])].append(row[i + 2])
                overall[c].append(row[i + 2])
    return {
        "models": sorted({r[0] for r in rows if r[0]}),
        "judged": len(rows),
        "criteria": {c: _spread(overall[c]) for c in CRITERIA_COLUMNS},
        "series": {c: [_spread(v) for v in per_bucket[c]] for c in CRITERIA_COLUMNS},
    }


def _spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "std": None}
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"n": len(values), "mean": statistics.fmean(values), "std": std}


def _data_quality(adb: AuditDB, start: float, end: float) -> dict[str, Any]:
    runs: dict[str, Counter[str]] = defaultdict(Counter)
    failures, skipped = [], []
    for job, started, ok, items, skip, detail, error in adb.query(
        "SELECT job, started_at, ok, items, skipped, detail, error FROM job_runs "
        "WHERE started_at >= ? AND started_at < ? ORDER BY started_at",
        [start, end],
    ):
        runs[job].update(runs=1, failed=0 if ok else 1, items=items or 0, skipped=skip or 0)
        if not ok:
            failures.append({"job": job, "time": iso(started), "error": error or "unknown"})
        if skip:
            reason = _reason(detail)
            skipped.append({"job": job, "time": iso(started), "count": skip, "reason": reason})
    jobs = []
    for job in sorted(set(runs) | set(STATE_ROWS)):
        state = load_state(adb, job)
        counts = {"runs": 0, "failed": 0, "items": 0, "skipped": 0, **runs.get(job, {})}
        jobs.append({"job": job, **counts,
                     "last_success": iso(state.last_success_at),
                     "consecutive_failures": state.failures})  # fmt: skip
    return {"jobs": jobs, "failures": failures, "skipped": skipped[-50:]}


def _reason(detail: str | None) -> str:
    try:
        data = json.loads(detail or "{}")
    except json.JSONDecodeError:
        return ""
    if not isinstance(data, dict):
        return ""
    if "skipped_reason" in data:
        return str(data["skipped_reason"])
    parts = [f"{k.replace('_', ' ')}: {data[k]}" for k in
             ("over_budget", "no_reply_yet", "erased_meanwhile", "failed") if data.get(k)]  # fmt: skip
    if "candidates" in data:
        parts.append("not drawn in the sample")
    return ", ".join(parts)


def collect_report(
    adb: AuditDB, settings: Settings, start: float, end: float, period: str = "custom"
) -> dict[str, Any]:
    """Every section's data (JSON-ready), for [start, end)."""
    b = Buckets(start, end, settings.jobs.timezone)
    return {
        "title": f"Solace moderator report ({period})",
        "period": {"name": period, "start": iso(start), "end": iso(end), "start_ts": start,
                   "end_ts": end, "bucket": "hour" if b.hourly else "day",
                   "timezone": settings.jobs.timezone,
                   "labels": b.labels()},
        "activity": _activity(adb, start, end, b),
        "events": _events(adb, start, end, b),
        "toxicity": _toxicity(adb, settings, start, end, b),
        "judge": _judge(adb, start, end, b),
        "flagged": flagged_conversations(adb, settings, start, end),
        "data_quality": _data_quality(adb, start, end),
    }  # fmt: skip


def summary_text(data: dict[str, Any]) -> str:
    """A short, counts-only summary for a moderator chat (no user text, no keys)."""
    a, e = data["activity"], data["events"]
    crisis = ", ".join(f"{k} {v}" for k, v in sorted(e["crisis"]["by_category"].items()))
    failed = len(data["data_quality"]["failures"])
    approp = data["judge"]["criteria"]["appropriateness"]["mean"]
    return "\n".join([
        f"{data['title']}: {data['period']['start']} - {data['period']['end']}",
        f"Users {a['users_active']} ({a['users_new']} new), messages "
        f"{a['messages_user']} in / {a['messages_assistant']} out",
        f"Crisis events {e['crisis']['total']}" + (f" ({crisis})" if crisis else ""),
        f"Reply-guard events {e['guard']['total']}, toxicity events {e['toxicity']['total']}",
        f"Judged {data['judge']['judged']}" + (
            f", mean appropriateness {approp:.2f}" if approp is not None else ""),
        f"Flagged conversations {len(data['flagged'])}; job failures {failed}",
    ])  # fmt: skip


def report_dir(settings: Settings, db_path: Path) -> Path:
    """`jobs.report_dir`, else `reports/` beside the database."""
    return settings.jobs.report_dir or Path(db_path).parent / "reports"


def write_report(data: dict[str, Any], out_dir: Path, html: str) -> tuple[Path, Path]:
    """Write the HTML and JSON files (mode 0600: they hold redacted excerpts)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.fromtimestamp(data["period"]["end_ts"], dt.UTC).strftime("%Y%m%d-%H%M")
    base = out_dir / f"solace-report-{data['period']['name']}-{stamp}"
    paths = (base.with_suffix(".html"), base.with_suffix(".json"))
    for path, text in zip(paths, (html, json.dumps(data, indent=2, ensure_ascii=False)),
                          strict=True):  # fmt: skip
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
    return paths


def build_report(
    db_path: Path, settings: Settings, start: float, end: float, period: str, out_dir: Path
) -> tuple[dict[str, Any], tuple[Path, Path]]:
    """Collect, render and write (synchronous; the job runs it in a thread)."""
    from bot.audit.report.render import render_html

    with audit_connection(db_path) as adb:
        data = collect_report(adb, settings, start, end, period)
    return data, write_report(data, out_dir, render_html(data))


async def publish_report(
    db_path: Path,
    settings: Settings,
    start: float,
    end: float,
    period: str,
    out_dir: Path | None = None,
    post: bool = True,
) -> tuple[tuple[Path, Path], list[str]]:
    """Write the report; post it to the configured moderator chats; returns (paths, posted)."""
    from bot.audit.report.post import post_report

    out = out_dir or report_dir(settings, db_path)
    data, paths = await asyncio.to_thread(build_report, db_path, settings, start, end, period, out)
    posted = await post_report(settings, summary_text(data), paths[0]) if post else []
    return paths, posted
