"""Near-duplicate detection: word 3-gram shingles, MinHash LSH (datasketch) to find candidates,
exact Jaccard to decide.

LSH keeps the search sub-linear for ExTES-sized sets (11k dialogues); the exact check on the
stored shingle sets makes the decision deterministic (MinHash only estimates). Paraphrases that
share few word 3-grams are not caught: this is lexical de-duplication, like the web-corpus
pipelines that use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SHINGLE_WORDS = 3
NUM_PERM = 128
_WORD_RE = re.compile(r"\w+", re.UNICODE)


def shingles(texts: Iterable[str], n: int = SHINGLE_WORDS) -> frozenset[str]:
    """Lower-cased word n-grams over the texts (each text shingled on its own)."""
    out: set[str] = set()
    for text in texts:
        words = _WORD_RE.findall(text.lower())
        if 0 < len(words) < n:
            out.add(" ".join(words))
        out.update(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    return frozenset(out)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b| (0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


class NearDuplicateIndex:
    """Dialogues seen so far; `find` returns the id of one at or above the threshold."""

    def __init__(self, threshold: float, num_perm: int = NUM_PERM) -> None:
        from datasketch import MinHashLSH

        self.threshold = threshold
        self._num_perm = num_perm
        # LSH finds pairs somewhat below the threshold too; the exact check then decides.
        self._lsh = MinHashLSH(threshold=max(threshold - 0.15, 0.05), num_perm=num_perm)
        self._sets: dict[str, frozenset[str]] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def _minhash(self, items: frozenset[str]):  # type: ignore[no-untyped-def]
        from datasketch import MinHash

        mh = MinHash(num_perm=self._num_perm)
        mh.update_batch([s.encode("utf-8") for s in sorted(items)])
        return mh

    def find(self, items: frozenset[str]) -> tuple[str, float] | None:
        """(id, Jaccard) of the most similar stored dialogue at or above the threshold."""
        if not items or not self._sets:
            return None
        best: tuple[str, float] | None = None
        for key in self._lsh.query(self._minhash(items)):
            score = jaccard(items, self._sets[key])
            if score >= self.threshold and (best is None or score > best[1]):
                best = (key, score)
        return best

    def add(self, key: str, items: frozenset[str]) -> None:
        """Store a dialogue's shingles under `key` (ignored if the key is already there)."""
        if key in self._sets or not items:
            return
        self._sets[key] = items
        self._lsh.insert(key, self._minhash(items))
