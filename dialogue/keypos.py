"""KeyPOS from Penn Treebank tags alone: which tokens the KeyPOS representation keeps.

en_core_web_sm sets universal POS from the tag, a few word rules and six rules that read the
dependency parse; `keypos_flags` applies the tag and word rules (`TagRules`, read from the
model's attribute_ruler by `dialogue.context.tag_rules`) and stands in for the parse-dependent
ones with the neighbouring tags, so the parser need not run (see `dialogue.context`'s docstring
for how close that comes). Pure functions, no spaCy import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The universal POS tags KeyPOS keeps ("Leveraging LLMs for Emotionally Supportive Chatbots").
KEYPOS_TAGS = frozenset({"NOUN", "VERB", "ADJ", "ADV", "ADP", "PROPN", "NUM", "SCONJ", "PRON"})


@dataclass(frozen=True)
class TagRules:
    """UPOS from a Penn Treebank tag (and the word), as the pipeline's attribute_ruler sets it
    when no dependency label is involved."""

    by_tag: dict[str, str]
    by_tag_word: dict[tuple[str, str], str]

    def upos(self, tag: str, lower: str) -> str:
        return self.by_tag_word.get((tag, lower)) or self.by_tag.get(tag, "X")


# Neighbourhoods that stand in for the parser in `keypos_flags` (see the module docstring).
_NOMINAL = frozenset({"NN", "NNS", "NNP", "NNPS", "CD", "$", "AFX", "VBG", "ADD"})
_ADJ = frozenset({"JJ", "JJR", "JJS"})
_ADV = frozenset({"RB", "RBR", "RBS"})
_NEGATION = frozenset({"not", "n't", "nt", "n’t"})
_ARTICLES = frozenset({"the", "a", "an", "every", "no", "another"})
_DO = frozenset({"do", "does", "did"})
_DO_HAVE = _DO | {"'d", "have", "has", "had"}
_GET = frozenset({"get", "got", "gets", "getting", "gotten"})
_BARE_BE = frozenset({"m", "im"})  # "i m thinking": the apostrophe left out
_EXPL_BE = frozenset({"is", "are", "was", "were", "'s", "'re"})
_INVERSION = frozenset({"PRP", "EX", "DT", "PRP$", "NN", "NNS", "NNP", "JJ", "CD", "POS"})
_CLAUSE_START = frozenset({"", ".", ",", ":", "WRB", "WP", "CC", "UH", "``", "''", "-LRB-", "NFP"})


def _determiner_modifies(tags: Sequence[str], i: int) -> bool:
    """Whether the DT/WDT at `i` modifies what follows (DET) rather than standing alone (PRON)."""
    n, j = len(tags), i + 1
    while (
        j < n and j <= i + 4 and (tags[j] in _ADJ or tags[j] in _ADV or tags[j] in ("HYPH", "VBN"))
    ):
        j += 1
    following = tags[j] if j < n else ""
    return following in _NOMINAL or (j > i + 1 and tags[j - 1] in _ADJ and following in _ADJ)


def _auxiliary_do_have(lowers: Sequence[str], tags: Sequence[str], i: int) -> bool:
    """Whether the do/have form at `i` is an auxiliary: a main verb follows, past adverbs,
    negation and (in a question) the subject."""
    want = ("VB", "VBP") if lowers[i] in _DO else ("VBN", "VBD")
    skip = _ADV | {"PRP", "EX"} | (_INVERSION if i == 0 or tags[i - 1] in _CLAUSE_START else set())
    for j in range(i + 1, min(i + 6, len(tags))):
        if tags[j] in want:
            return True
        if tags[j] not in skip and lowers[j] not in _NEGATION:
            return False
    return False


def keypos_flags(lowers: Sequence[str], tags: Sequence[str], rules: TagRules) -> list[bool]:
    """Which tokens KeyPOS keeps, from their lower-cased forms and Penn Treebank tags only."""
    n = len(tags)
    keep = [rules.upos(tag, low) in KEYPOS_TAGS for tag, low in zip(tags, lowers, strict=True)]
    for i in range(n):
        tag, low = tags[i], lowers[i]
        if tag in ("DT", "WDT"):
            if low == "the" and i + 1 < n and tags[i + 1] in ("JJR", "RBR"):
                keep[i] = True  # "the more ..., the better": advmod, PRON in the full pipeline
            elif low in _ARTICLES or (i + 1 < n and lowers[i + 1] in ("other", "another")):
                pass  # always DET: "the", "a", "each other"
            elif not _determiner_modifies(tags, i):
                keep[i] = True  # standing alone: PRON in the full pipeline
        elif tag.startswith("VB"):
            if low in _DO_HAVE:
                keep[i] = not _auxiliary_do_have(lowers, tags, i)
            elif low in _GET or low in _BARE_BE:
                j = i + 1
                while j < n and tags[j] in _ADV:
                    j += 1
                if j < n and tags[j] in (("VBN",) if low in _GET else ("VBG", "VBN")):
                    keep[i] = False  # passive "got fired", progressive "i m going": auxiliaries
            if i > 0 and tags[i - 1] == "EX" and low in _EXPL_BE:
                keep[i] = True  # "there is": VERB in the full pipeline
    return keep
