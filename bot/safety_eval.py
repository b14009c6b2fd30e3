"""Evaluate the crisis screen on labelled case files (JSON Lines).

A case is `{"text": ..., "level": "crisis"|"concern"|"none", "category": <category>|null,
"style": "explicit"|"indirect"|"third_person"|"past"|"negated"|"distress"|"control"}`.
Figures: recall per category and per style over `level == "crisis"` cases (a case counts as
found when the screen says crisis, whatever category it names; category agreement is reported
separately), and the false-positive rate (screen says crisis) over `level == "none"` cases,
overall and on ordinary distress ("distress" and "negated" styles).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bot.safety import ScreenResult, screen_message

LEVELS = ("crisis", "concern", "none")
DISTRESS_STYLES = ("distress", "negated")


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


def load_cases(paths: Iterable[Path]) -> list[Case]:
    """Read case files (or directories of `*.jsonl`), naming file and line on a bad record."""
    cases: list[Case] = []
    for path in paths:
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        for file in files:
            for lineno, line in enumerate(file.read_text("utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    case = Case(
                        row["text"], row["level"], row.get("category"), row["style"], file.name
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{file}:{lineno}: bad case ({exc})") from exc
                if case.level not in LEVELS:
                    raise ValueError(f"{file}:{lineno}: level must be one of {LEVELS}")
                cases.append(case)
    return cases


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


def summary_for_dir(cases_dir: Path) -> str:
    """Dev and held-out figures for a directory of case files (heldout.jsonl kept apart)."""
    files = sorted(cases_dir.glob("*.jsonl"))
    groups = {
        "dev": [f for f in files if f.name != "heldout.jsonl"],
        "held-out (not tuned on)": [f for f in files if f.name == "heldout.jsonl"],
    }
    return "\n".join(
        format_report(evaluate(load_cases(group)), title)
        for title, group in groups.items()
        if group
    )
