"""Rules + semantic layer + conversation context: the crisis screen the bot and the evaluation use.

`LayeredScreen.screen(text, context, raised)` is the one decision, a pure function of its inputs
(the encoder aside):
1. The rules (`bot.safety.screen_message`) on the message. A rule hit keeps what the rules say:
   crisis stays crisis, and a hit the context rules softened (past, someone else's past,
   hyperbole) stays concern. The semantic layer acts only on messages the rules left at none.
2. The semantic score of the message alone (max over its chunks): P(crisis) at or above the
   crisis threshold → crisis; P(concern or crisis) at or above the concern threshold → concern.
   The model reads the message as `semantic_input` gives it: clauses whose rule match a
   context rule cancelled (negation, figure of speech, topic, accident) are left out, so the
   context rules keep deciding about the words they judged.
3. The semantic score of the last few user turns joined with the message ("a goodbye after an
   hour of hopelessness"), against its own thresholds, chosen on the validation conversations.
4. When the person's risk state is raised (`RiskState`), the single-message thresholds are the
   lower `raised_*` ones.

`RiskState` is the per-person decaying score: each concern adds 1, each crisis 2, halved every
`RISK_HALF_LIFE_SECONDS`; raised at `RISK_RAISED_AT` or above. The engine keeps it in the
memory store (erased by /forget, in /export) and records a moderator event when it rises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bot.safety import ScreenResult, screen_normalized, vetoed_clauses
from bot.safety.semantic import SemanticScore, SemanticScreen
from bot.safety.text import normalize

CONTEXT_TURNS = 3
CONTEXT_MAX_CHARS = 2_000
RISK_HALF_LIFE_SECONDS = 3 * 3600.0
RISK_RAISED_AT = 0.75  # one concern keeps the thresholds lowered for about 1.2 hours
RISK_FORGET_BELOW = 0.05  # a score this small (about 13 hours after one concern) is dropped
RISK_WEIGHTS = {"crisis": 2.0, "concern": 1.0, "none": 0.0}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The screen's result and the scores behind it (numbers only, never text)."""

    result: ScreenResult
    single: SemanticScore | None
    context: SemanticScore | None
    semantic: bool


def semantic_input(text: str, norm: str | None = None) -> str:
    """What the semantic layer reads of a message: the raw text, or - when the context rules
    cancelled a rule match (negation, figure of speech, topic, accident) - the normalised text
    without those clauses. Training and thresholds use the same function."""
    norm = normalize(text) if norm is None else norm
    spans = vetoed_clauses(norm)
    if not spans:
        return text
    kept, pos = [], 0
    for start, end in spans:
        kept.append(norm[pos:start])
        pos = end
    kept.append(norm[pos:])
    return " ".join(" ".join(kept).replace(" . ", " ").replace(" , ", " ").split())


def context_text(context: Sequence[str], text: str) -> str | None:
    """The last `CONTEXT_TURNS` earlier user turns and the message, joined, or None without
    earlier turns. Each earlier turn is cut to `CONTEXT_MAX_CHARS`."""
    earlier = [t[-CONTEXT_MAX_CHARS:].strip() for t in context[-CONTEXT_TURNS:] if t.strip()]
    if not earlier:
        return None
    return " . ".join([*earlier, text[:CONTEXT_MAX_CHARS]])


def combine(
    rule: ScreenResult,
    single: SemanticScore | None,
    context: SemanticScore | None,
    semantic: SemanticScreen,
    *,
    raised: bool,
) -> ScreenResult:
    """Apply the order in the module docstring to a rule result and the semantic scores."""
    if rule.level != "none":
        return rule
    th = semantic.thresholds
    t_crisis = th.raised_crisis if raised else th.crisis
    t_concern = th.raised_concern if raised else th.concern
    if single is not None and single.p_crisis >= t_crisis:
        return _result("crisis", single.category, "semantic")
    if context is not None and context.p_crisis >= th.context_crisis:
        return _result("crisis", context.category, "context")
    if single is not None and single.p_flag >= t_concern:
        return _result("concern", single.category, "semantic")
    if context is not None and context.p_flag >= th.context_concern:
        return _result("concern", context.category, "context")
    return rule


def _result(level: str, category: str, source: str) -> ScreenResult:
    return ScreenResult(
        crisis=level == "crisis",
        category=category,
        level="crisis" if level == "crisis" else "concern",
        matched=f"{source}:{category}",
    )


class LayeredScreen:
    """Rules first, then the semantic layer when it is loaded (None: rules only)."""

    def __init__(self, semantic: SemanticScreen | None) -> None:
        self.semantic = semantic

    @property
    def status(self) -> str:
        """ "ready", "failing: ..." or "off" (for `solace health` and logs)."""
        return "off" if self.semantic is None else self.semantic.status

    def screen(self, text: str, context: Sequence[str] = (), *, raised: bool = False) -> Verdict:
        """Screen one message given the person's earlier user turns (oldest first)."""
        norm = normalize(text)
        rule = screen_normalized(norm)
        if self.semantic is None or rule.level != "none":
            return Verdict(rule, None, None, semantic=False)
        reads = semantic_input(text, norm)
        joined = context_text([semantic_input(t) for t in context], reads)
        texts = [reads] if joined is None else [reads, joined]
        scores = self.semantic.score_many(texts)
        single = scores[0]
        ctx = scores[1] if joined is not None else None
        if single is None and ctx is None:
            return Verdict(rule, None, None, semantic=False)
        result = combine(rule, single, ctx, self.semantic, raised=raised)
        return Verdict(result, single, ctx, semantic=True)


@dataclass(frozen=True, slots=True)
class RiskState:
    """A person's decaying conversation-level risk (score, and when it was last updated)."""

    score: float = 0.0
    updated_at: float = 0.0

    def decayed(self, now: float) -> RiskState:
        """The state at `now` (halved every `RISK_HALF_LIFE_SECONDS`)."""
        if self.score <= 0.0 or now <= self.updated_at:
            return replace(self, updated_at=max(now, self.updated_at))
        factor = math.pow(0.5, (now - self.updated_at) / RISK_HALF_LIFE_SECONDS)
        return RiskState(self.score * factor, now)

    def raised(self, now: float) -> bool:
        """True when the next messages get the lower thresholds."""
        return self.decayed(now).score >= RISK_RAISED_AT

    def after(self, level: str, now: float) -> RiskState:
        """The state after a message screened at `level`."""
        current = self.decayed(now)
        return RiskState(current.score + RISK_WEIGHTS.get(level, 0.0), now)
