"""The semantic layer's thresholds, chosen on the validation pool (`solace safety train-semantic`).

The pool is several case files, each a *source* (by default the v2 validation set and the spent
v2 held-out set, written at different times). A threshold is the lowest on `GRID` at which the
semantic layer's *added* false-alarm rate — what the combined screen says beyond what the rules
alone already say — stays within its budget on **every source on its own**: the worst source
decides. The first artifact took the lowest threshold meeting a pooled target on one small set
(84 controls) and its control FPR went from 0.04 there to 0.17 on held-out cases; a threshold
that must hold on each of two sets written apart is a leave-one-source-out rule in small, and
`cross_source` measures how far a threshold chosen on one source alone carries to the others.

Budgets are added rates because the rules' own false alarms are not the semantic layer's to
hide: on the v2 held-out controls the rules alone say crisis for 0.09, so no threshold could
bring the combined screen under the issue's 0.05 there. Only aggregate rates are computed; no
case text is printed or stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.safety.semantic import SemanticClassifier, SemanticScore, chunk_text, per_text

GRID = tuple(round(x, 3) for x in (*np.linspace(0.05, 0.95, 91), *np.linspace(0.955, 0.995, 9)))
# Added over the rules, on every source: (tier, flag?) -> budget.
# ESConv: seeker turns of held-out dialogues (`esconv_source`, tier "esconv"): the previous
# artifact added 0.22% said crisis and 2.7% flagged over the rules on unseen seeker turns; the
# layer may add no more (a check-in after one ordinary message in ~35 is already a cost).
CRISIS_BUDGET = {("control", False): 0.03, ("distress", False): 0.02, ("esconv", False): 0.0025}
CONCERN_BUDGET = {("control", True): 0.10, ("distress", True): 0.10, ("esconv", True): 0.025}
RAISED_CRISIS_BUDGET = {("control", False): 0.07, ("distress", False): 0.04}
RAISED_CONCERN_BUDGET = {("distress", True): 0.25}


@dataclass(frozen=True, slots=True)
class Source:
    """One case file of the pool: each case's tier and label, the rules' level, the score."""

    name: str
    tiers: tuple[str, ...]
    labels: tuple[str, ...]
    rules: tuple[str, ...]
    scores: tuple[SemanticScore | None, ...]


def levels(src: Source, t_crisis: float, t_concern: float) -> list[str]:
    """The combined screen's level per case: a rule hit keeps its level, else the thresholds."""
    out = []
    for rule, s in zip(src.rules, src.scores, strict=True):
        if rule != "none" or s is None:
            out.append(rule)
        elif s.p_crisis >= t_crisis:
            out.append("crisis")
        elif s.p_flag >= t_concern:
            out.append("concern")
        else:
            out.append("none")
    return out


def rate(src: Source, lv: Sequence[str], tier: str, flag: bool) -> float:
    """Share of the none cases of `tier` said crisis (flag: said anything but none)."""
    sel = [
        x
        for x, t, lab in zip(lv, src.tiers, src.labels, strict=True)
        if t == tier and lab == "none"
    ]
    if not sel:
        return 0.0
    return sum((x != "none") if flag else (x == "crisis") for x in sel) / len(sel)


def _within(sources: Sequence[Source], t_c: float, t_f: float, budget: dict) -> bool:
    for src in sources:
        lv = levels(src, t_c, t_f)
        for (tier, flag), allowed in budget.items():
            if rate(src, lv, tier, flag) - rate(src, src.rules, tier, flag) > allowed + 1e-9:
                return False
    return True


def _lowest(ok: Callable[[float], bool]) -> float:
    """The lowest threshold in `GRID` that satisfies `ok` (the highest if none does)."""
    return next((t for t in GRID if ok(t)), GRID[-1])


def select(sources: Sequence[Source]) -> dict[str, float]:
    """Single-message and raised thresholds: the lowest within budget on every source."""
    t_crisis = _lowest(lambda t: _within(sources, t, 2.0, CRISIS_BUDGET))
    t_concern = _lowest(lambda t: _within(sources, t_crisis, t, CONCERN_BUDGET))
    raised_crisis = _lowest(lambda t: _within(sources, t, 2.0, RAISED_CRISIS_BUDGET))
    raised_concern = _lowest(lambda t: _within(sources, raised_crisis, t, RAISED_CONCERN_BUDGET))
    return {
        "crisis": t_crisis,
        "concern": min(t_concern, t_crisis),
        "raised_crisis": min(raised_crisis, t_crisis),
        "raised_concern": min(raised_concern, t_concern),
    }


def figures(src: Source, t_crisis: float, t_concern: float) -> dict[str, float]:
    """Aggregate rates of the combined screen on one source at the given thresholds."""
    lv = levels(src, t_crisis, t_concern)

    def recall(tiers: tuple[str, ...]) -> float:
        sel = [
            x == "crisis"
            for x, t, lab in zip(lv, src.tiers, src.labels, strict=True)
            if lab == "crisis" and t in tiers
        ]
        return round(sum(sel) / max(len(sel), 1), 4)

    return {
        "cases": len(lv),
        "recall_explicit": recall(("explicit",)),
        "recall_indirect": recall(("indirect",)),
        "fpr_control": round(rate(src, lv, "control", False), 4),
        "fpr_distress": round(rate(src, lv, "distress", False), 4),
        "flag_control": round(rate(src, lv, "control", True), 4),
        "flag_distress": round(rate(src, lv, "distress", True), 4),
        "rules_fpr_control": round(rate(src, src.rules, "control", False), 4),
        "fpr_esconv": round(rate(src, lv, "esconv", False), 5),
        "flag_esconv": round(rate(src, lv, "esconv", True), 5),
    }


def cross_source(sources: Sequence[Source]) -> dict[str, Any]:
    """For each source: its figures at thresholds chosen on the other sources alone (how a
    threshold carries to cases it was not chosen on) and at thresholds chosen on it alone."""
    out: dict[str, Any] = {}
    for src in sources:
        others = [s for s in sources if s is not src]
        if not others:
            continue
        t_other, t_own = select(others), select([src])
        out[src.name] = {
            "chosen_on_others": {
                "thresholds": t_other,
                **figures(src, t_other["crisis"], t_other["concern"]),
            },
            "chosen_on_itself": {
                "thresholds": t_own,
                **figures(src, t_own["crisis"], t_own["concern"]),
            },
        }
    return out


def score_texts(
    classifier: SemanticClassifier, embed: Callable[[list[str]], np.ndarray], texts: Sequence[str]
) -> list[SemanticScore | None]:
    """Score texts the way the bot does (chunks, max over chunks)."""
    chunks = [chunk_text(t) for t in texts]
    flat = [c for cs in chunks for c in cs]
    scores = classifier.score_embeddings(embed(flat)) if flat else []
    return per_text(chunks, scores)


def load_sources(
    classifier: SemanticClassifier, embed: Callable[[list[str]], np.ndarray], files: Sequence[Path]
) -> list[Source]:
    """Each case file as a `Source`, screened by the rules and scored by the classifier."""
    from bot.safety import screen_message
    from bot.safety.context import semantic_input
    from bot.safety.figures import load_labelled
    from bot.safety.semantic_data import is_spent_v3, v3_half

    sources = []
    for path in files:
        cases = load_labelled([path])
        if is_spent_v3(path):  # its other half is trained on
            cases = [c for c in cases if v3_half(c.text) == "pool"]
        sources.append(
            Source(
                name=f"{path.parent.name}/{path.name}",
                tiers=tuple(c.tier for c in cases),
                labels=tuple(c.level for c in cases),
                rules=tuple(screen_message(c.text).level for c in cases),
                scores=tuple(
                    score_texts(classifier, embed, [semantic_input(c.text) for c in cases])
                ),
            )
        )
    return sources


def esconv_source(
    classifier: SemanticClassifier, embed: Callable[[list[str]], np.ndarray]
) -> Source | None:
    """The ESConv seeker turns of the threshold slice of held-out dialogues
    (`esconv_threshold_slice`; reviewed disclosures and ambiguous turns left out) as a source of
    ordinary talk, tier "esconv"; None without SOLACE_DATA_DIR."""
    from bot.safety import screen_message
    from bot.safety.context import semantic_input
    from bot.safety.semantic_data import (
        DEFAULT_DATA_DIR,
        ESCONV_LABELS,
        esconv_seeker_turns,
        esconv_threshold_slice,
        read_jsonl,
    )

    try:
        turns = esconv_seeker_turns()
    except (OSError, ValueError, KeyError):
        return None
    labels_path = DEFAULT_DATA_DIR / ESCONV_LABELS
    labels = {r["id"]: r["level"] for r in read_jsonl(labels_path)} if labels_path.is_file() else {}
    texts = [t for i, t in turns if esconv_threshold_slice(i) and labels.get(i, "none") == "none"]
    if not texts:
        return None
    return Source(
        name="esconv (threshold slice of held-out dialogues)",
        tiers=("esconv",) * len(texts),
        labels=("none",) * len(texts),
        rules=tuple(screen_message(t).level for t in texts),
        scores=tuple(score_texts(classifier, embed, [semantic_input(t) for t in texts])),
    )


def context_thresholds(
    classifier: SemanticClassifier,
    embed: Callable[[list[str]], np.ndarray],
    paths: Sequence[Path],
    t_crisis: float,
    t_concern: float,
) -> tuple[float, float]:
    """Context thresholds: the lowest at which no none conversation's joined window says
    crisis (resp. is flagged), never below the single-message thresholds."""
    from bot.safety.context import context_text, semantic_input
    from bot.safety.figures import load_labelled

    convs = load_labelled([p for p in paths if p.is_file()])
    if not convs:
        return t_crisis, t_concern
    joined = [
        context_text([semantic_input(t) for t in c.turns], semantic_input(c.text))
        or semantic_input(c.text)
        for c in convs
    ]
    scores = score_texts(classifier, embed, joined)
    negatives = [
        s for s, c in zip(scores, convs, strict=True) if c.level == "none" and s is not None
    ]
    ctx_crisis = _lowest(lambda t: t >= t_crisis and all(s.p_crisis < t for s in negatives))
    ctx_concern = _lowest(lambda t: t >= t_concern and all(s.p_flag < t for s in negatives))
    return ctx_crisis, ctx_concern


def choose_thresholds(
    classifier: SemanticClassifier,
    embed: Callable[[list[str]], np.ndarray],
    validation: Sequence[Path],
    conversations: Sequence[Path],
) -> tuple[dict[str, float], dict[str, Any]]:
    """All six thresholds and what they give on each source (aggregate rates only)."""
    sources = load_sources(classifier, embed, validation)
    esconv = esconv_source(classifier, embed)
    if esconv is not None:
        sources.append(esconv)
    chosen = select(sources)
    ctx_crisis, ctx_concern = context_thresholds(
        classifier, embed, conversations, chosen["crisis"], chosen["concern"]
    )
    thresholds = {
        "crisis": chosen["crisis"],
        "concern": chosen["concern"],
        "context_crisis": ctx_crisis,
        "context_concern": ctx_concern,
        "raised_crisis": chosen["raised_crisis"],
        "raised_concern": chosen["raised_concern"],
    }
    summary = {
        "rule": "lowest threshold within the added-FPR budgets on every source",
        "budgets_added_over_rules": {
            "crisis": {f"{t}{'_flag' if f else '_fpr'}": b for (t, f), b in CRISIS_BUDGET.items()},
            "concern": {
                f"{t}{'_flag' if f else '_fpr'}": b for (t, f), b in CONCERN_BUDGET.items()
            },
            "esconv": "crisis and any flag on the seeker turns of half the held-out dialogues",
        },
        "by_source": {s.name: figures(s, chosen["crisis"], chosen["concern"]) for s in sources},
        "cross_source": cross_source(sources),
    }
    return thresholds, summary
