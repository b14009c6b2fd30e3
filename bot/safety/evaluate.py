"""Evaluate the crisis screen and the reply guard on labelled case files (JSON Lines).

A case is `{"text": ..., "level": "crisis"|"concern"|"none", "category": <category>|null,
"style": "explicit"|"indirect"|"third_person"|"past"|"negated"|"distress"|"control"}`.
Figures: recall per category and per style over `level == "crisis"` cases (a case counts as
found when the screen says crisis, whatever category it names; category agreement is reported
separately), and the false-positive rate (screen says crisis) over `level == "none"` cases,
overall and on ordinary distress ("distress" and "negated" styles).

Guard cases (`tests/safety_cases/guard/`) are model replies: `{"text": ..., "ok": bool,
"reason": <expected reason>|null, "style": ...}`. Figures: recall over `ok == false` cases (the
guard withdrew the reply, whatever reason it gave; reason agreement is reported separately) and
the false-positive rate over `ok == true` cases, each checked twice: on the whole reply
(`final=True`) and streamed the way the engine streams it (every character prefix with
`final=False`, then the whole reply with `final=True`), where a harmless reply withdrawn at any
prefix is a false positive.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bot.safety.guard import GuardResult, guard_reply
from bot.safety.screen import ScreenResult, screen_message

T = TypeVar("T")

LEVELS = ("crisis", "concern", "none")
DISTRESS_STYLES = ("distress", "negated")
HELDOUT_FILE = "heldout.jsonl"
GUARD_DIR = "guard"


@dataclass(frozen=True, slots=True)
class Case:
    """One labelled message."""

    text: str
    level: str
    category: str | None
    style: str
    source: str


@dataclass
class Report:
    """Counts behind the figures; `hit/total` per key."""

    recall_by_category: dict[str, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    recall_by_style: dict[str, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    category_agreement: list[int] = field(default_factory=lambda: [0, 0])
    false_positives: list[int] = field(default_factory=lambda: [0, 0])
    distress_false_positives: list[int] = field(default_factory=lambda: [0, 0])
    concern_agreement: list[int] = field(default_factory=lambda: [0, 0])
    misses: list[Case] = field(default_factory=list)
    false_alarms: list[Case] = field(default_factory=list)

    def rate(self, pair: list[int]) -> float:
        """hit/total, 0.0 for an empty set."""
        return pair[0] / pair[1] if pair[1] else 0.0


def _read_case_rows(
    paths: Iterable[Path], kind: str, make: Callable[[dict[str, Any], str], T]
) -> list[T]:
    """Read `*.jsonl` case files (or directories of them), naming file and line on a bad record.

    `make(row, file_name)` builds one case and raises ValueError/KeyError/TypeError on a bad row.
    """
    cases: list[T] = []
    for path in paths:
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        for file in files:
            for lineno, line in enumerate(file.read_text("utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    cases.append(make(json.loads(line), file.name))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{file}:{lineno}: bad {kind} ({exc})") from exc
    return cases


def _make_case(row: dict[str, Any], file_name: str) -> Case:
    case = Case(row["text"], row["level"], row.get("category"), row["style"], file_name)
    if case.level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    return case


def load_cases(paths: Iterable[Path]) -> list[Case]:
    """Read case files (or directories of `*.jsonl`), naming file and line on a bad record."""
    return _read_case_rows(paths, "case", _make_case)


def evaluate(
    cases: Iterable[Case], screen: Callable[[str], ScreenResult] = screen_message
) -> Report:
    """Screen every case and count hits, misses and false alarms."""
    report = Report()
    for case in cases:
        result = screen(case.text)
        if case.level == "crisis":
            key = case.category or "unknown"
            _tally(report.recall_by_category[key], result.crisis)
            _tally(report.recall_by_style[case.style], result.crisis)
            if result.crisis:
                _tally(report.category_agreement, result.category == case.category)
            else:
                report.misses.append(case)
        else:
            _tally(report.false_positives, result.crisis)
            if case.style in DISTRESS_STYLES:
                _tally(report.distress_false_positives, result.crisis)
            if case.level == "concern":
                _tally(report.concern_agreement, result.level == "concern")
            if result.crisis:
                report.false_alarms.append(case)
    return report


def _tally(pair: list[int], hit: bool) -> None:
    pair[0] += int(hit)
    pair[1] += 1


def format_report(report: Report, title: str) -> str:
    """A small plain-text table of the figures."""
    lines = [f"{title}:"]
    for name, pair in sorted(report.recall_by_category.items()):
        lines.append(f"  recall {name:<18} {report.rate(pair):.3f}  ({pair[0]}/{pair[1]})")
    for name, pair in sorted(report.recall_by_style.items()):
        lines.append(f"  recall style={name:<12} {report.rate(pair):.3f}  ({pair[0]}/{pair[1]})")
    pairs = {
        "category agreement": report.category_agreement,
        "FPR (all non-crisis)": report.false_positives,
        "FPR (ordinary distress)": report.distress_false_positives,
        "concern level agreement": report.concern_agreement,
    }
    for name, pair in pairs.items():
        lines.append(f"  {name:<25} {report.rate(pair):.3f}  ({pair[0]}/{pair[1]})")
    return "\n".join(lines)


def dev_and_heldout(directory: Path) -> dict[str, list[Path]]:
    """A directory's case files split into "dev" and "held-out" (heldout.jsonl), non-empty."""
    files = sorted(directory.glob("*.jsonl"))
    groups = {
        "dev": [f for f in files if f.name != HELDOUT_FILE],
        "held-out": [f for f in files if f.name == HELDOUT_FILE],
    }
    return {name: group for name, group in groups.items() if group}


def summary_for_dir(cases_dir: Path) -> str:
    """Dev and held-out figures of the screen and, from `guard/`, of the reply guard."""
    lines = [
        format_report(evaluate(load_cases(group)), f"screen, {title}")
        for title, group in dev_and_heldout(cases_dir).items()
    ]
    if (cases_dir / GUARD_DIR).is_dir():
        lines += [
            format_guard_report(evaluate_guard(load_guard_cases(group)), f"guard, {title}")
            for title, group in dev_and_heldout(cases_dir / GUARD_DIR).items()
        ]
    return "\n".join(lines)


# --- reply guard ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GuardCase:
    """One labelled model reply: `ok` says whether it may be shown."""

    text: str
    ok: bool
    reason: str | None
    style: str
    source: str


@dataclass
class GuardReport:
    """Counts behind the guard figures; `hit/total` per key, whole replies and streamed."""

    recall_by_style: dict[str, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    fpr_by_style: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    recall: list[int] = field(default_factory=lambda: [0, 0])
    false_positives: list[int] = field(default_factory=lambda: [0, 0])
    reason_agreement: list[int] = field(default_factory=lambda: [0, 0])
    streamed_recall: list[int] = field(default_factory=lambda: [0, 0])
    streamed_false_positives: list[int] = field(default_factory=lambda: [0, 0])
    misses: list[GuardCase] = field(default_factory=list)
    false_alarms: list[tuple[GuardCase, str]] = field(default_factory=list)

    def rate(self, pair: list[int]) -> float:
        """hit/total, 0.0 for an empty set."""
        return pair[0] / pair[1] if pair[1] else 0.0


def _make_guard_case(row: dict[str, Any], file_name: str) -> GuardCase:
    case = GuardCase(row["text"], row["ok"], row.get("reason"), row["style"], file_name)
    if not isinstance(case.ok, bool) or not isinstance(case.text, str):
        raise ValueError("'ok' must be true/false, 'text' a string")
    return case


def load_guard_cases(paths: Iterable[Path]) -> list[GuardCase]:
    """Read guard case files (or directories of `*.jsonl`), naming file and line on errors."""
    return _read_case_rows(paths, "guard case", _make_guard_case)


def streamed_verdict(text: str, guard: Callable[..., GuardResult] = guard_reply) -> GuardResult:
    """The first failing verdict when `text` arrives one character at a time (`final=False`
    on every prefix, then `final=True`), as the engine checks a streamed reply; else OK."""
    for end in range(1, len(text) + 1):
        verdict = guard(text[:end], final=False)
        if not verdict.ok:
            return verdict
    return guard(text, final=True)


def evaluate_guard(
    cases: Iterable[GuardCase], guard: Callable[..., GuardResult] = guard_reply
) -> GuardReport:
    """Run the guard on every case, whole and streamed; count withdrawals and false alarms."""
    report = GuardReport()
    for case in cases:
        whole = guard(case.text, final=True)
        streamed = streamed_verdict(case.text, guard)
        if not case.ok:
            _tally(report.recall, not whole.ok)
            _tally(report.recall_by_style[case.style], not whole.ok)
            _tally(report.streamed_recall, not streamed.ok)
            if not whole.ok:
                _tally(report.reason_agreement, whole.reason == case.reason)
            else:
                report.misses.append(case)
        else:
            _tally(report.false_positives, not whole.ok)
            _tally(report.fpr_by_style[case.style], not whole.ok)
            _tally(report.streamed_false_positives, not streamed.ok)
            failed = whole if not whole.ok else streamed
            if not failed.ok:
                report.false_alarms.append((case, failed.reason or "unspecified"))
    return report


def format_guard_report(report: GuardReport, title: str) -> str:
    """A small plain-text table of the guard figures."""
    lines = [f"{title}:"]
    for name, pair in sorted(report.recall_by_style.items()):
        lines.append(f"  recall style={name:<15} {report.rate(pair):.3f}  ({pair[0]}/{pair[1]})")
    for name, pair in sorted(report.fpr_by_style.items()):
        lines.append(f"  FPR style={name:<18} {report.rate(pair):.3f}  ({pair[0]}/{pair[1]})")
    pairs = {
        "recall (whole reply)": report.recall,
        "recall (streamed)": report.streamed_recall,
        "reason agreement": report.reason_agreement,
        "FPR (whole reply)": report.false_positives,
        "FPR (streamed, any prefix)": report.streamed_false_positives,
    }
    for name, pair in pairs.items():
        lines.append(f"  {name:<28} {report.rate(pair):.3f}  ({pair[0]}/{pair[1]})")
    return "\n".join(lines)
