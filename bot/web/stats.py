"""Human-evaluation statistics, as the ExTES paper reports them (pure functions).

- Interactive study (the paper's Table 9): per aspect and model pair, the share of sessions in
  which the first model won, tied or lost, with percentile-bootstrap 95% confidence intervals
  (sessions resampled with replacement; win, tie and loss from the same resamples).
- Dialogue ratings (the paper's Table 4): mean 0–3 score per aspect and source, and Fleiss' κ
  per aspect over the items rated by at least two raters.

The paper's own figures (../shared/papers/FIGURES.md, transcribed) sit beside ours; they come
from other models (LLaMA-7B variants), 50 raters and 100 conversations, so compare trends only.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any

PAIRWISE_ASPECTS = ("fluency", "identification", "comforting", "suggestion", "overall")
# The five questions after talking to each model (ESConv/ExTES human interactive evaluation).
QUESTIONS = {
    "fluency": "Which one's responses were more fluent and easier to understand?",
    "identification": "Which one explored your situation more deeply and was more helpful in "
    "identifying your problem?",
    "comforting": "Which one was more skilful at comforting you?",
    "suggestion": "Which one gave you more helpful suggestions for your problem?",
    "overall": "Overall, which one's emotional support do you prefer?",
}
OUTCOMES = ("win", "tie", "loss")
RATING_ASPECTS = ("informativeness", "understanding", "helpfulness", "consistency", "coherence")
RATING_HELP = {
    "informativeness": "How much useful information, insight or suggestion does the supporter "
    "give?",
    "understanding": "How well does the supporter understand the seeker's feelings and situation?",
    "helpfulness": "How helpful would the supporter's replies be to the seeker?",
    "consistency": "Do the supporter's replies stay consistent with each other and the facts?",
    "coherence": "Do the replies follow on from what was said, in a natural order?",
}
RATING_SCALE = (0, 1, 2, 3)
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95

# The paper's Table 9: LLaMA-ExTES with strategies vs each opponent, win / tie / loss in %.
PAPER_TABLE9: dict[str, Any] = {
    "model": "LLaMA-ExTES (strategies)",
    "opponents": ("LLaMA-ESConv", "LLaMA-ExTES (no strategies)"),
    "rows": {
        "fluency": ((28, 50, 22), (43, 48, 9)),
        "identification": ((27, 53, 20), (28, 58, 14)),
        "comforting": ((49, 37, 14), (25, 28, 47)),
        "suggestion": ((57, 22, 21), (42, 36, 22)),
        "overall": ((51, 28, 21), (42, 44, 14)),
    },
    "setting": "50 raters, 100 conversations of at least 10 turns, same issue with each model",
}
# The paper's Table 4: ExTES vs its seed dialogues, mean 0–3, and Fleiss' κ.
PAPER_TABLE4: dict[str, Any] = {
    "sources": ("ExTES", "seed dialogues"),
    "rows": {
        "informativeness": (2.53, 2.39, 0.51),
        "understanding": (2.52, 2.64, 0.46),
        "helpfulness": (2.61, 2.48, 0.44),
        "consistency": (2.67, 2.75, 0.39),
        "coherence": (2.45, 2.38, 0.52),
    },
}


def shares(outcomes: Sequence[str]) -> dict[str, float]:
    """Percent of `outcomes` that are win, tie and loss (0 for an empty list)."""
    n = len(outcomes)
    counted = Counter(outcomes)
    return {o: 100.0 * counted[o] / n if n else 0.0 for o in OUTCOMES}


def bootstrap_ci(
    outcomes: Sequence[str],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap intervals (in %) of the win, tie and loss shares."""
    import numpy as np

    n = len(outcomes)
    if n == 0:
        return {o: (0.0, 0.0) for o in OUTCOMES}
    codes = np.array([OUTCOMES.index(o) for o in outcomes])
    rng = np.random.default_rng(seed)
    sample = codes[rng.integers(0, n, size=(resamples, n))]
    tail = 100 * (1 - confidence) / 2
    out = {}
    for k, name in enumerate(OUTCOMES):
        share = 100.0 * (sample == k).mean(axis=1)
        lo, hi = np.percentile(share, [tail, 100 - tail])
        out[name] = (float(lo), float(hi))
    return out


def model_pairs(models: int) -> list[tuple[int, int]]:
    """(a, b) with a < b: the pairs a study with `models` models asks about."""
    return list(combinations(range(models), 2))


def pairwise_table(
    answers: Iterable[tuple[int, int, str, str]], model_names: Sequence[str]
) -> dict[str, Any]:
    """Table 9 from answers (model_a, model_b, aspect, outcome for model_a).

    Returns {"pairs": [{"a", "b", "label"}], "cells": {aspect: [cell per pair]}} where a cell
    is {"n", "win", "tie", "loss", "ci": {outcome: (lo, hi)}}.
    """
    grouped: dict[tuple[int, int, str], list[str]] = defaultdict(list)
    for a, b, aspect, outcome in answers:
        if outcome not in OUTCOMES or aspect not in PAIRWISE_ASPECTS:
            continue
        if a > b:  # stored canonically, but be safe: flip the point of view
            a, b, outcome = b, a, {"win": "loss", "loss": "win", "tie": "tie"}[outcome]
        grouped[(a, b, aspect)].append(outcome)
    pairs = model_pairs(len(model_names))
    cells: dict[str, list[dict[str, Any]]] = {}
    for aspect in PAIRWISE_ASPECTS:
        cells[aspect] = []
        for a, b in pairs:
            outs = grouped.get((a, b, aspect), [])
            cells[aspect].append({"n": len(outs), **shares(outs), "ci": bootstrap_ci(outs)})
    return {
        "pairs": [
            {"a": a, "b": b, "label": f"{model_names[a]} vs {model_names[b]}"} for a, b in pairs
        ],  # fmt: skip
        "cells": cells,
    }


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' κ from an items × categories table of rating counts.

    Items may have different numbers of raters (each needs at least two; others are ignored):
    P_i = Σ_j n_ij (n_ij − 1) / (n_i (n_i − 1)), p_j = Σ_i n_ij / Σ_i n_i,
    κ = (mean P_i − Σ p_j²) / (1 − Σ p_j²). None when undefined (no item with two ratings, or
    every rating in one category, where chance agreement is already 1).
    """
    rows = [list(r) for r in table if sum(r) >= 2]
    if not rows:
        return None
    total = sum(sum(r) for r in rows)
    agreement = [sum(c * (c - 1) for c in r) / (sum(r) * (sum(r) - 1)) for r in rows]
    p_bar = sum(agreement) / len(rows)
    columns = len(rows[0])
    p_e = sum((sum(r[j] for r in rows) / total) ** 2 for j in range(columns))
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1 - p_e)


def rating_table(
    ratings: Iterable[tuple[int, str, str, int]], sources: Sequence[str]
) -> dict[str, Any]:
    """Table 4 from ratings (item id, source, aspect, score 0–3).

    Returns {aspect: {"sources": {source: {"n", "mean", "sd"}}, "kappa": κ over every item,
    "items": items with ≥ 2 ratings}}.
    """
    import statistics

    by_source: dict[tuple[str, str], list[int]] = defaultdict(list)
    by_item: dict[tuple[str, int], list[int]] = defaultdict(list)
    for item, source, aspect, score in ratings:
        if aspect not in RATING_ASPECTS or score not in RATING_SCALE:
            continue
        by_source[(aspect, source)].append(score)
        by_item[(aspect, item)].append(score)
    out: dict[str, Any] = {}
    for aspect in RATING_ASPECTS:
        cols: dict[str, Any] = {}
        for source in sources:
            values = by_source.get((aspect, source), [])
            cols[source] = {
                "n": len(values),
                "mean": statistics.fmean(values) if values else None,
                "sd": statistics.stdev(values) if len(values) > 1 else None,
            }
        table = [
            [scores.count(c) for c in RATING_SCALE]
            for (a, _), scores in by_item.items()
            if a == aspect
        ]
        out[aspect] = {
            "sources": cols,
            "kappa": fleiss_kappa(table),
            "items": sum(1 for row in table if sum(row) >= 2),
        }
    return out
