"""The crisis screen: deterministic rules over the normalised message, no model involved.

`screen_message(text)` normalises a raw message (`bot.safety.text`) and runs every rule in
`bot.safety.patterns`; the context rules (negation, past tense, someone else, hyperbole, topical
talk) decide each match's level, and the most urgent verdict wins. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bot.safety.patterns import CRISIS_PATTERNS
from bot.safety.patterns.blocks import CATEGORIES, CrisisPattern
from bot.safety.patterns.context_rules import (
    ASKED_RE,
    DAY_RE,
    FICTION_RE,
    FRAME_RES,
    HELPER_RE,
    INFO_QUESTION_RE,
    NEGATORS,
    NO_LEAD_RE,
    OTHER_PAST_RE,
    OTHER_WORDS,
    PAST_BACKREF_RE,
    PAST_RE,
    PEST_RE,
    PREPARED_RE,
    RECENT_RE,
    RECOVERED_RE,
    SAFE_NOW_RE,
    SAID_NO_RE,
    SELF_WORDS,
    THING_WORDS,
    TOPICAL_RE,
    WONT_ACT_RE,
    YOU_WORDS,
)
from bot.safety.text import normalize

Level = Literal["none", "concern", "crisis"]
Subject = Literal["self", "other"]
NEGATION_WINDOW_TOKENS = 3
SUBJECT_WINDOW_TOKENS = 6
_LEVEL_RANK = {"crisis": 0, "concern": 1, "none": 2}
_CLAUSE_BREAKS = (" . ", " , ", " but ")
# One substring test per distinct trigger, then a set test per rule (see `with_triggers`).
_ALL_TRIGGERS = tuple(sorted({t for p in CRISIS_PATTERNS for t in p.triggers}))


@dataclass(frozen=True, slots=True)
class ScreenResult:
    """What the crisis screen decided about one message.

    Args:
        crisis: True when the engine must answer with the fixed crisis reply.
        category: one of `CATEGORIES`, or None.
        level: "crisis", "concern" (worrying but not an emergency: past events, someone else's
            past, hyperbole) or "none".
        matched: the name of the rule that decided ("suicide/kill_self", "llm:self_harm"); never
            the user's words, so it is safe to store in events and print in audits.
        subject: "self" when the writer is the one at risk, "other" when they write about
            someone else who is (the crisis reply is worded for a helper then).
    """

    crisis: bool
    category: str | None
    level: Level
    matched: str | None
    subject: Subject = "self"


NO_CRISIS = ScreenResult(crisis=False, category=None, level="none", matched=None)


def screen_message(text: str) -> ScreenResult:
    """Screen one raw message (never its KeyPOS form) with the deterministic matcher."""
    return screen_normalized(normalize(text))


def screen_normalized(norm: str, *, explicit_self: bool = False) -> ScreenResult:
    """Screen text already passed through `bot.safety.text.normalize`.

    Args:
        explicit_self: count a match as being about the writer only when a first-person word
            says so (the reply guard uses this: "have you had thoughts of suicide?" is a good
            question from the bot, not a crisis statement).
    """
    found: list[tuple[tuple[int, int, int], ScreenResult]] = []
    present = {t for t in _ALL_TRIGGERS if t in norm}
    for pattern in CRISIS_PATTERNS:
        if present.isdisjoint(pattern.triggers):
            continue
        verdict = _first_verdict(pattern, norm, explicit_self)
        if verdict is None:
            continue
        level, subject = verdict
        result = ScreenResult(
            crisis=level == "crisis",
            category=pattern.category,
            level=level,
            matched=pattern.name,
            subject=subject,
        )
        rank = (
            _LEVEL_RANK[level],
            0 if subject == "self" else 1,
            CATEGORIES.index(pattern.category),
        )
        found.append((rank, result))
    if not found:
        return NO_CRISIS
    return min(found, key=lambda item: item[0])[1]


def vetoed_clauses(norm: str) -> list[tuple[int, int]]:
    """Clauses of normalised text where a pattern matched but a context rule cancelled it
    (negated, topical, accident, figurative, about a thing), merged and in order.

    The semantic layer does not read these clauses (`bot.safety.context.semantic_input`): the
    context rules have judged those words harmless, so "this exam is killing me" must not reach
    the model as "killing me", while the rest of the message still does.
    """
    spans: list[tuple[int, int]] = []
    present = {t for t in _ALL_TRIGGERS if t in norm}
    for pattern in CRISIS_PATTERNS:
        if present.isdisjoint(pattern.triggers):
            continue
        for match in pattern.regex.finditer(norm):
            if judge_span(pattern, norm, match.span()) is None:
                spans.append(_clause_bounds(norm, match.start(), match.end()))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _first_verdict(
    pattern: CrisisPattern, norm: str, explicit_self: bool
) -> tuple[Level, Subject] | None:
    for match in pattern.regex.finditer(norm):
        verdict = judge_span(pattern, norm, match.span(), explicit_self)
        if verdict is not None:
            return verdict
    return None


def _clause_bounds(norm: str, start: int, end: int) -> tuple[int, int]:
    left = max(norm.rfind(b, 0, start + 1) for b in _CLAUSE_BREAKS)
    rights = [i for i in (norm.find(b, end - 1) for b in _CLAUSE_BREAKS) if i != -1]
    return max(left, 0), min(rights, default=len(norm))


def _resolve_subject(before: Sequence[str]) -> str:
    """Whom a match is about, from the nearest subject word before it: "self", "other",
    "you", "thing" ("my phone is going to die") or "unknown"."""
    for token in reversed(before[-SUBJECT_WINDOW_TOKENS:]):
        if token in SELF_WORDS:
            return "self"
        if token in YOU_WORDS:
            return "you"
        if token in OTHER_WORDS:
            return "other"
        if token in THING_WORDS:
            return "thing"
    return "unknown"


def _sentence_bounds(norm: str, start: int, end: int) -> tuple[int, int]:
    left = norm.rfind(" . ", 0, start + 1)
    right = norm.find(" . ", end - 1)
    return max(left, 0), len(norm) if right == -1 else right


def judge_span(
    pattern: CrisisPattern, norm: str, span: tuple[int, int], explicit_self: bool = False
) -> tuple[Level, Subject] | None:
    """Apply the context rules to one match of `pattern` at `span` of `norm`: None to ignore
    it, else (level, subject). The None cases are final once seen (more text never brings a
    match back); the level can still change with later text (a recent time word raises it, a
    safe-now ending or a will-not-act lowers it)."""
    start, end = _clause_bounds(norm, *span)
    s_start, s_end = _sentence_bounds(norm, *span)
    clause = norm[start:end]
    sentence = norm[s_start:s_end]
    before = norm[start : span[0]].split()
    if pattern.negatable and (
        any(t in NEGATORS for t in before[-NEGATION_WINDOW_TOKENS:])
        or NO_LEAD_RE.search(" ".join(before[-6:]))
    ):
        return None
    if ASKED_RE.search(norm, s_start, span[0]) and SAID_NO_RE.search(norm, span[1], s_end):
        return None
    if pattern.topical and TOPICAL_RE.search(clause):
        return None
    if pattern.frame in ("accident", "figurative") and FRAME_RES[pattern.frame].search(clause):
        return None
    if pattern.frame == "departure" and FRAME_RES["departure"].search(sentence):
        return None
    if pattern.frame == "fiction" and FICTION_RE.search(clause):
        return None
    if (
        pattern.category == "harm_to_others"
        and norm[span[0] : span[1]].endswith((" them", " it"))
        and PEST_RE.search(norm)
    ):
        return None  # "want to kill them before the kids get stung" (a wasps' nest)
    subject = pattern.subject or _resolve_subject(before)
    if subject == "thing" or (subject == "unknown" and explicit_self):
        return None
    subject = "self" if subject == "unknown" else subject
    level: Level = "crisis" if pattern.level == "crisis" else "concern"
    if subject == "you":
        return "concern", "other"
    now = RECENT_RE.search(norm) is not None
    today = now or DAY_RE.search(sentence) is not None
    if pattern.temporal and not today and _dated(norm, clause, end):
        level = "concern"
    if (
        pattern.temporal
        and not now
        and (SAFE_NOW_RE.search(norm, span[1]) or RECOVERED_RE.search(norm))
    ):
        level = "concern"
    if subject == "other":
        recent = " ".join(before[-NEGATION_WINDOW_TOKENS:]) + " " + norm[span[0] : span[1]]
        if OTHER_PAST_RE.search(recent) and not (now or DAY_RE.search(norm)):
            level = "concern"
        if HELPER_RE.search(norm) and not now:
            level = "concern"  # a helper asking how to help: ask them whether it is happening now
    if WONT_ACT_RE.search(norm, span[1]):
        level = "concern"  # "... id never do anything though": ask, do not alarm
    if pattern.frame == "hyperbole" and FRAME_RES["hyperbole"].search(norm):
        level = "concern"
    if pattern.topical and HELPER_RE.search(norm) and not (now or DAY_RE.search(norm)):
        level = "concern"
    if INFO_QUESTION_RE.search(norm, s_start, span[0]) and PREPARED_RE.search(norm) and not now:
        level = "concern"  # asked ahead of time: "how do i know if ... ? hes fine"
    return level, "other" if subject == "other" else "self"


def _dated(norm: str, clause: str, clause_end: int) -> bool:
    """A past marker in the match's clause, or in the next clause when it refers back to it
    ("a terrible period of self harm , but that was fifty years ago")."""
    if PAST_RE.search(clause):
        return True
    rest = norm[clause_end:]
    if not PAST_BACKREF_RE.search(rest):
        return False
    following = rest.lstrip(" ,").removeprefix("but ")
    nxt = min((i for i in (following.find(b) for b in _CLAUSE_BREAKS) if i != -1), default=None)
    return PAST_RE.search(following[:nxt]) is not None
