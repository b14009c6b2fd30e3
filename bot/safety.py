"""Solace's safety layer: crisis screening before the model, a reply guard after it.

Pure functions do the work (`screen_message`, `guard_reply`); `SafetyLayer` wires them to the
settings, the optional LLM second opinion and the crisis reply text. The engine calls, per turn:
`await safety.screen(text)` → on a crisis `safety.crisis_reply(result, country, language_code)`
(the model is not called) → otherwise `safety.guard(text_so_far, final=False)` before releasing
each streamed piece and `safety.guard(reply, final=True)` at the end → `safety.fallback_reply()`
when the guard says no. See docs/safety.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bot.safety_guard import GuardResult, PromptLeakDetector, guard_reply
from bot.safety_patterns import CRISIS_PATTERNS
from bot.safety_resources import Hotlines, compose_crisis_reply, load_hotlines
from bot.safety_rules import (
    CATEGORIES,
    FRAME_RES,
    NEGATORS,
    OTHER_PAST_RE,
    OTHER_WORDS,
    PAST_RE,
    RECENT_RE,
    SELF_WORDS,
    THING_WORDS,
    TOPICAL_RE,
    YOU_WORDS,
    CrisisPattern,
)
from bot.safety_text import normalize

if TYPE_CHECKING:
    from bot.backends import Backend
    from bot.safety_semantic import SemanticScreen

__all__ = [
    "CATEGORIES",
    "GuardResult",
    "SafetyLayer",
    "ScreenResult",
    "guard_reply",
    "screen_message",
    "screen_normalized",
    "vetoed_clauses",
]

logger = logging.getLogger(__name__)

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
    """Screen text already passed through `bot.safety_text.normalize`.

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

    The semantic layer does not read these clauses (`bot.safety_context.semantic_input`): the
    context rules have judged those words harmless, so "this exam is killing me" must not reach
    the model as "killing me", while the rest of the message still does.
    """
    spans: list[tuple[int, int]] = []
    present = {t for t in _ALL_TRIGGERS if t in norm}
    for pattern in CRISIS_PATTERNS:
        if present.isdisjoint(pattern.triggers):
            continue
        for match in pattern.regex.finditer(norm):
            if _judge(pattern, norm, match) is None:
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
        verdict = _judge(pattern, norm, match, explicit_self)
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


def _judge(
    pattern: CrisisPattern, norm: str, match: re.Match[str], explicit_self: bool = False
) -> tuple[Level, Subject] | None:
    """Apply the context rules to one match: None to ignore it, else (level, subject)."""
    start, end = _clause_bounds(norm, match.start(), match.end())
    clause = norm[start:end]
    before = norm[start : match.start()].split()
    if pattern.negatable and any(t in NEGATORS for t in before[-NEGATION_WINDOW_TOKENS:]):
        return None
    if pattern.topical and TOPICAL_RE.search(clause):
        return None
    if pattern.frame in ("accident", "figurative") and FRAME_RES[pattern.frame].search(clause):
        return None
    subject = pattern.subject or _resolve_subject(before)
    if subject == "thing" or (subject == "unknown" and explicit_self):
        return None
    subject = "self" if subject == "unknown" else subject
    level: Level = "crisis" if pattern.level == "crisis" else "concern"
    if subject == "you":
        return "concern", "other"
    if pattern.temporal and PAST_RE.search(clause) and RECENT_RE.search(norm) is None:
        level = "concern"
    if subject == "other":
        recent = " ".join(before[-NEGATION_WINDOW_TOKENS:]) + " " + match.group(0)
        if OTHER_PAST_RE.search(recent) and RECENT_RE.search(norm) is None:
            level = "concern"
    if pattern.frame == "hyperbole" and FRAME_RES["hyperbole"].search(norm):
        level = "concern"
    return level, "other" if subject == "other" else "self"


CLASSIFIER_PROMPT = (
    "You are a safety classifier for an emotional-support chat service. Read the user's message "
    "and answer with exactly one word from this list: suicide, self_harm, abuse, harm_to_others, "
    "medical_emergency, none. Choose a category only if the writer, or someone with them, may be "
    "in danger now. Ordinary sadness, stress or loneliness is none."
)
_CLASSIFIER_LABEL_RE = re.compile(r"\b(" + "|".join(CATEGORIES) + r"|none)\b")


def parse_classifier_label(output: str) -> str | None:
    """The category a classifier answered (first label in its output), or None."""
    found = _CLASSIFIER_LABEL_RE.search(
        output.lower().replace("-", "_").replace("self harm", "self_harm")
    )
    if found is None or found.group(1) == "none":
        return None
    return found.group(1)


class SafetyLayer:
    """The safety layer the engine holds: screen, crisis reply, guard and fallback.

    Args:
        settings: the `safety` section of `bot.config.Settings` (duck-typed; missing fields
            take the defaults documented in docs/safety.md).
        classifier: an optional `Backend` whose answer can raise, never lower, the level.
        lock: held around classifier calls (pass the engine's model lock when the classifier
            is the same single-context local model).
    """

    def __init__(
        self,
        settings: Any = None,
        classifier: Backend | None = None,
        *,
        lock: asyncio.Lock | None = None,
        system_prompt: str | None = None,
        semantic: SemanticScreen | None = None,
    ) -> None:
        from bot.safety_context import LayeredScreen
        from dialogue.prompts import SYSTEM_PROMPT

        self._layered = LayeredScreen(semantic)

        self._settings = settings
        self._classifier = classifier if self._setting("llm_classifier", False) else None
        self._lock = lock
        self._timeout_s = float(self._setting("classifier_timeout_seconds", 20.0))
        self._leak = PromptLeakDetector(system_prompt or SYSTEM_PROMPT)
        path = self._setting("hotlines_path", None)
        self._hotlines: Hotlines = load_hotlines(path)
        self._default_country: str | None = self._setting("default_country", None)

    def _setting(self, name: str, default: Any) -> Any:
        value = getattr(self._settings, name, None)
        return default if value is None else value

    @property
    def hotlines(self) -> Hotlines:
        """The hotline table in use."""
        return self._hotlines

    @property
    def semantic_status(self) -> str:
        """The semantic layer's state: "ready", "failing: ..." or "off"."""
        return self._layered.status

    async def screen(
        self, text: str, context: Sequence[str] = (), *, raised: bool = False
    ) -> ScreenResult:
        """Rules, then the semantic layer over the message and the person's recent user turns
        (`bot.safety_context`), then the optional LLM second opinion (which can only raise).

        Args:
            context: the person's earlier user turns in this conversation, oldest first.
            raised: the person's conversation-level risk is raised (lower thresholds).
        """
        if self._layered.semantic is None:
            result = screen_message(text)
        else:  # the encoder blocks for a few milliseconds: keep it off the event loop
            verdict = await asyncio.to_thread(self._layered.screen, text, context, raised=raised)
            result = verdict.result
        if result.crisis or self._classifier is None:
            return result
        label = await self._classify(text)
        if label is None:
            return result
        return ScreenResult(crisis=True, category=label, level="crisis", matched=f"llm:{label}")

    async def _classify(self, text: str) -> str | None:
        try:
            if self._lock is None:
                output = await asyncio.wait_for(
                    asyncio.to_thread(self._classify_sync, text), self._timeout_s
                )
            else:
                async with self._lock:
                    output = await asyncio.wait_for(
                        asyncio.to_thread(self._classify_sync, text), self._timeout_s
                    )
        except Exception as exc:  # a boundary: a broken classifier must not break a turn
            logger.warning(
                "safety classifier failed (%s); using the deterministic screen", type(exc).__name__
            )
            return None
        return parse_classifier_label(output)

    def _classify_sync(self, text: str) -> str:
        from bot.backends import GenOptions

        classifier = self._classifier
        if classifier is None:
            return ""
        messages = [
            {"role": "system", "content": CLASSIFIER_PROMPT},
            {"role": "user", "content": text[:4000]},
        ]
        options = GenOptions(temperature=0.0, max_new_tokens=8, seed=0)
        return "".join(classifier.generate(messages, options))

    def crisis_reply(
        self, result: ScreenResult, country: str | None = None, language_code: str | None = None
    ) -> str:
        """The fixed, warm reply with resources for the user's country (or a fallback)."""
        return compose_crisis_reply(
            self._hotlines,
            result.category,
            result.subject,
            country or self._default_country,
            language_code,
        )

    def checkin_reply(self, result: ScreenResult, country: str | None = None) -> str:
        """The fixed check-in that follows the model's reply at concern level."""
        from bot.safety_checkin import compose_checkin

        return compose_checkin(self._hotlines, result.category, country or self._default_country)

    def answers_yes(self, text: str) -> bool:
        """True when a message answers the check-in with yes (any usual phrasing)."""
        from bot.safety_checkin import answers_yes

        return answers_yes(text)

    def guard(self, reply_so_far: str, *, final: bool) -> GuardResult:
        """Check model output before it is shown; `final=False` for each streamed piece."""
        return guard_reply(reply_so_far, final=final, leak=self._leak)

    def fallback_reply(self) -> str:
        """What the user sees instead of a withdrawn reply."""
        return (
            "I'm sorry, I don't think what I was about to say would help. I'm still here and "
            "listening. Could you tell me a little more about how you're feeling right now?"
        )
