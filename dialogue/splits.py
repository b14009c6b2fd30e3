"""Scene-stratified train/test splits (scikit-learn's `StratifiedShuffleSplit`, fixed seed).

ExTES is stratified by `scene`, ESConv by `problem_type` (loaded as `Dialogue.scene`). The split
depends only on the dialogue ids and scenes, so re-reading the same file gives the same split,
whatever order the dialogues come in. Scenes with a single dialogue cannot be stratified: they
are pooled into one "rare" class; a pool of one goes to train. A data set too small for every
class to appear on both sides falls back to an unstratified shuffle (logged).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

from dialogue.types import Dialogue

logger = logging.getLogger(__name__)

NO_SCENE = "(no scene)"
RARE_CLASS = "(rare scenes)"


def scene_of(dialogue: Dialogue) -> str:
    """The stratification label: the scene, or "(no scene)"."""
    return dialogue.scene if dialogue.scene else NO_SCENE


def _labels(dialogues: Sequence[Dialogue], key: Callable[[Dialogue], str]) -> list[str]:
    """Labels with single-member classes pooled (sklearn needs >= 2 members per class)."""
    raw = [key(d) for d in dialogues]
    counts = Counter(raw)
    return [label if counts[label] >= 2 else RARE_CLASS for label in raw]


def stratified_split(
    dialogues: Sequence[Dialogue],
    test_size: float = 0.2,
    seed: int = 42,
    key: Callable[[Dialogue], str] = scene_of,
) -> tuple[list[Dialogue], list[Dialogue]]:
    """Split into (train, test), stratified by `key` (the scene), reproducibly.

    Each side keeps the input order. Raises ValueError for duplicate ids or a bad test_size.
    """
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")
    ids = [d.id for d in dialogues]
    if len(set(ids)) != len(ids):
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)[:5]
        raise ValueError(f"dialogue ids must be unique to split reproducibly; duplicates: {dupes}")
    # Canonical order (by id) so the split does not depend on the order of the input.
    ordered = sorted(dialogues, key=lambda d: d.id)
    labels = _labels(ordered, key)
    label_counts = Counter(labels)
    keep = [i for i, label in enumerate(labels) if label_counts[label] >= 2]
    kept = set(keep)
    forced_train = [d for i, d in enumerate(ordered) if i not in kept]
    pool = [ordered[i] for i in keep]
    pool_labels = [labels[i] for i in keep]
    if len(pool) < 2:
        return list(dialogues), []
    try:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        train_idx, test_idx = next(splitter.split(pool, pool_labels))
    except ValueError as exc:
        logger.warning("stratified split impossible (%s); using an unstratified shuffle", exc)
        shuffle = ShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        train_idx, test_idx = next(shuffle.split(pool))
    test_ids = {pool[i].id for i in test_idx}
    train_ids = {pool[i].id for i in train_idx} | {d.id for d in forced_train}
    train = [d for d in dialogues if d.id in train_ids]
    test = [d for d in dialogues if d.id in test_ids]
    return train, test
