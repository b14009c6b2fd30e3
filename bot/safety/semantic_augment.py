"""The voices the semantic layer's training rows are augmented into (`bot.safety.semantic_data.
augment`): lower case without punctuation, texting abbreviations, typos. Seeded by the caller."""

from __future__ import annotations

import random
import re

_TEXTING = {
    "you": "u",
    "are": "r",
    "i'm": "im",
    "because": "bc",
    "don't": "dont",
    "can't": "cant",
    "tonight": "tonite",
    "really": "rly",
    "to": "2",
    "please": "pls",
    "know": "kno",
    "i've": "ive",
    "going to": "gonna",
    "want to": "wanna",
}


_PUNCT_RE = re.compile(r"[^\w\s']+")


def lower_plain(text: str) -> str:
    """Lower case, no punctuation (the `no_punct` voice)."""
    return " ".join(_PUNCT_RE.sub(" ", text.lower()).split())


def texting(text: str) -> str:
    """Lower case with common texting abbreviations."""
    out = " " + lower_plain(text) + " "
    for word, short in _TEXTING.items():
        out = out.replace(f" {word} ", f" {short} ")
    return out.strip()


def typos(text: str, rng: random.Random) -> str:
    """Two words of four letters or more get a swapped or dropped letter."""
    words = text.split()
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    for i in rng.sample(candidates, min(2, len(candidates))):
        w = words[i]
        j = rng.randrange(1, len(w) - 1)
        words[i] = (
            w[:j] + w[j + 1 :] if rng.random() < 0.5 else w[: j - 1] + w[j] + w[j - 1] + w[j + 1 :]
        )
    return " ".join(words)
