"""`solace safety evaluate`: the crisis screen's figures on labelled case files, with intervals.

Reads both case formats: v2 (`tests/safety_cases/v2/README.md`: `text`, `level`, `category`,
`tier`, `voice`; conversation files add `turns` and `pair`) and the older dev format (`style`
instead of `tier`; its `negated`/`distress` styles count as the distress tier). A directory is
read recursively. Scoring convention (v2 README): a crisis case is caught when the screen says
crisis; a concern case is flagged when it says concern or crisis; a none case is a false
positive when it says crisis (any flag is reported too). 95% Wilson score intervals.

Conversation cases are screened as the bot screens them: each earlier turn in order, with the
turns before it as context and the person's risk state carried along, then the final message;
the per-message figure (final message alone, no context) is reported beside it.

No message text is printed unless `show_misses` is asked for (never do that on held-out files).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.safety.context import LayeredScreen, RiskState

CATEGORIES = ("suicide", "self_harm", "abuse", "harm_to_others", "medical_emergency")
LEVELS = ("crisis", "concern", "none")
Z95 = 1.959963984540054
STYLE_TO_TIER = {"negated": "distress"}
TURN_GAP_SECONDS = 60.0
ESCONV_LABELS = Path("data/safety/esconv_labels.jsonl")


@dataclass(frozen=True, slots=True)
class LabelledCase:
    """One labelled message, or a conversation when `turns` is not empty."""

    text: str
    level: str
    category: str | None
    tier: str
    voice: str
    source: str
    turns: tuple[str, ...] = ()


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n ((nan, nan) when n is 0)."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def fmt(k: int, n: int) -> str:
    """ "0.91 (29/32) [0.76, 0.97]", or "-" for an empty set."""
    if n == 0:
        return "-"
    lo, hi = wilson(k, n)
    return f"{k / n:.2f} ({k}/{n}) [{lo:.2f}, {hi:.2f}]"


def case_files(paths: Iterable[Path]) -> list[Path]:
    """The JSON Lines files named, directories read recursively."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    return files


def load_labelled(files: Iterable[Path]) -> list[LabelledCase]:
    """Read case files of either format; ValueError naming file and line on a bad record."""
    cases = []
    for file in files:
        for lineno, line in enumerate(file.read_text("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                tier = row.get("tier") or STYLE_TO_TIER.get(row["style"], row["style"])
                case = LabelledCase(
                    text=row["text"],
                    level=row["level"],
                    category=row.get("category"),
                    tier=tier,
                    voice=row.get("voice", "plain"),
                    source=file.name,
                    turns=tuple(row.get("turns", ())),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{file}:{lineno}: bad case ({exc})") from exc
            if case.level not in LEVELS or (case.level != "none") != (case.category in CATEGORIES):
                raise ValueError(f"{file}:{lineno}: level/category do not fit together")
            cases.append(case)
    return cases


@dataclass
class Tally:
    """Counts behind one report (k/n pairs)."""

    caught: dict[tuple[str, str], list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    category_ok: list[int] = field(default_factory=lambda: [0, 0])
    concern: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    none_crisis: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    none_flag: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    misses: list[LabelledCase] = field(default_factory=list)
    false_alarms: list[LabelledCase] = field(default_factory=list)

    def add(self, case: LabelledCase, level: str, category: str | None) -> None:
        """Count one screened case."""
        if case.level == "crisis":
            hit = level == "crisis"
            for key in (
                (case.tier, case.category),
                (case.tier, "all"),
                ("all", case.category),
                ("all", "all"),
            ):
                _bump(self.caught[key], hit)  # type: ignore[index]
            if hit:
                _bump(self.category_ok, category == case.category)
            else:
                self.misses.append(case)
        elif case.level == "concern":
            self.concern["n"] += 1
            self.concern[level] += 1
        else:
            for tier in (case.tier, "all"):
                _bump(self.none_crisis[tier], level == "crisis")
                _bump(self.none_flag[tier], level != "none")
            if level == "crisis":
                self.false_alarms.append(case)


def _bump(pair: list[int], hit: bool) -> None:
    pair[0] += int(hit)
    pair[1] += 1


def screen_single(screen: LayeredScreen, cases: Sequence[LabelledCase]) -> Tally:
    """Screen each message alone (no context, normal thresholds)."""
    tally = Tally()
    for case in cases:
        result = screen.screen(case.text).result
        tally.add(case, result.level, result.category)
    return tally


def screen_conversation(screen: LayeredScreen, case: LabelledCase) -> tuple[str, str | None]:
    """Screen a conversation turn by turn, as the engine does; the final message's result."""
    state, now = RiskState(), 0.0
    history: list[str] = []
    for text in case.turns:
        verdict = screen.screen(text, history, raised=state.raised(now))
        state = state.after(verdict.result.level, now)
        if not verdict.result.crisis:  # as the engine: a crisis turn is not joined again
            history.append(text)
        now += TURN_GAP_SECONDS
    final = screen.screen(case.text, history, raised=state.raised(now)).result
    return final.level, final.category


def report_lines(title: str, tally: Tally) -> list[str]:
    """Markdown for one tally: recall table, category agreement, concern, none cases."""
    tiers = sorted({t for t, _ in tally.caught if t != "all"}, key=lambda t: (t != "explicit", t))
    out = [f"#### {title}", ""]
    if tally.caught:
        out += [
            "| category | " + " | ".join([*tiers, "all tiers"]) + " |",
            "|" + " --- |" * (len(tiers) + 2),
        ]
        for cat in (*CATEGORIES, "all"):
            cells = [fmt(*tally.caught.get((t, cat), [0, 0])) for t in (*tiers, "all")]
            out.append(f"| {cat} | " + " | ".join(cells) + " |")
        out += [
            "",
            f"Caught crisis cases with the labelled category: {fmt(*tally.category_ok)}",
            "",
        ]
    if tally.concern["n"]:
        n = tally.concern["n"]
        flagged = tally.concern["concern"] + tally.concern["crisis"]
        out += [
            f"`concern` cases ({n}): flagged {fmt(flagged, n)}; as concern "
            f"{tally.concern['concern']}, as crisis {tally.concern['crisis']}, missed {n - flagged}.",
            "",
        ]
    if tally.none_crisis:
        out += ["| none cases | FPR (says crisis) | any flag |", "| --- | --- | --- |"]
        for tier in sorted(tally.none_crisis, key=lambda t: (t == "all", t)):
            out.append(
                f"| {tier} | {fmt(*tally.none_crisis[tier])} | {fmt(*tally.none_flag[tier])} |"
            )
        out.append("")
    return out


def conversation_lines(screen: LayeredScreen, cases: Sequence[LabelledCase]) -> list[str]:
    """Final message alone vs turn by turn with context and risk state."""
    alone, ctx = Tally(), Tally()
    for case in cases:
        result = screen.screen(case.text).result
        alone.add(case, result.level, result.category)
        ctx.add(case, *screen_conversation(screen, case))

    def row(name: str, t: Tally) -> str:
        concern = t.concern["concern"] + t.concern["crisis"]
        return (
            f"| {name} | {fmt(*t.caught.get(('all', 'all'), [0, 0]))} | "
            f"{fmt(*t.none_crisis.get('all', [0, 0]))} | {fmt(*t.none_flag.get('all', [0, 0]))} | "
            f"{concern}/{t.concern['n']} |"
        )

    return [
        "| what is screened | crisis cases said crisis | none cases said crisis | none cases flagged | concern cases flagged |",
        "| --- | --- | --- | --- | --- |",
        row("final message alone", alone),
        row("turn by turn with context and risk state (the bot)", ctx),
        "",
    ]


def evaluate_files(
    screen: LayeredScreen,
    files: Sequence[Path],
    *,
    title: str = "screen",
    show_misses: bool = False,
) -> str:
    """The whole Markdown report for some case files (singles and conversations apart)."""
    cases = load_labelled(files)
    singles = [c for c in cases if not c.turns]
    convs = [c for c in cases if c.turns]
    names = ", ".join(f.name for f in files)
    out = [f"### {title}: {names}", "", f"Screen: {describe(screen)}.", ""]
    if singles:
        tally = screen_single(screen, singles)
        out += report_lines(f"single messages ({len(singles)})", tally)
        if show_misses:
            out += [f"    MISS  [{c.category}/{c.tier}] {c.text}" for c in tally.misses]
            out += [f"    FALSE [{c.tier}] {c.text}" for c in tally.false_alarms]
    if convs:
        out += [f"#### conversations ({len(convs)})", "", *conversation_lines(screen, convs)]
    return "\n".join(out)


def describe(screen: LayeredScreen) -> str:
    """Which screen produced the figures (named in every report)."""
    if screen.semantic is None:
        return "rules only (bot/safety/patterns/)"
    meta = screen.semantic.classifier.meta
    return (
        f"rules + semantic layer ({meta.get('encoder', 'all-MiniLM-L6-v2 GGUF f16')}, "
        f"classifier trained {meta.get('trained', '?')})"
    )


def esconv_lines(screen: LayeredScreen, labels_path: Path | None = ESCONV_LABELS) -> list[str]:
    """Flag rate on every ESConv seeker turn (SOLACE_DATA_DIR), each screened alone.

    Groups: the reviewed disclosures in `labels_path` (flagging them is right), turns reviewed
    and judged too ambiguous to label, and the other turns - apart for the dialogues the
    classifier was trained on (in-sample), the half of the held-out dialogues whose turns chose
    thresholds (a flag-rate budget) and the other half, never used (out of sample)."""
    from bot.safety.semantic_data import (
        esconv_held_out,
        esconv_seeker_turns,
        esconv_threshold_slice,
        read_jsonl,
    )

    labels = {}
    if labels_path is not None and labels_path.is_file():
        labels = {r["id"]: r["level"] for r in read_jsonl(labels_path)}
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for turn_id, text in esconv_seeker_turns():
        label = labels.get(turn_id, "none")
        if label == "none":
            if esconv_threshold_slice(turn_id):
                group = "other, held out of training, chose thresholds"
            elif esconv_held_out(turn_id):
                group = "other, held out of training and thresholds"
            else:
                group = "other, trained on"
        else:
            group = "reviewed, ambiguous" if label == "skip" else "labelled disclosure"
        level = screen.screen(text).result.level
        counts[group][LEVELS.index(level)] += 1
    out = ["| ESConv seeker turns | n | says crisis | says concern |", "| --- | --- | --- | --- |"]
    for group, (crisis, concern, none) in sorted(counts.items()):
        n = crisis + concern + none
        out.append(f"| {group} | {n} | {fmt(crisis, n)} | {fmt(concern, n)} |")
    return out
