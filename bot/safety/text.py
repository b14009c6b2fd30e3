"""Text normalisation for the safety layer: one canonical form that the patterns match.

Everything here is pure, linear in the input and bounded: a 100k-character message costs the
same as a 20k one (see `bounded_window`). The steps, in order:

1. bound the work (head, tail and evenly spaced samples of very long input);
2. map the few emoji that carry crisis meaning to words (🔪 → "knife");
3. NFKD + drop combining marks, format characters (zero-width space/joiner, soft hyphen, BOM)
   and control characters; NFKC then folds fullwidth and "mathematical bold" letters;
4. casefold, then fold look-alike letters of other scripts to the Latin letter they imitate
   (Cyrillic "і" in "kіll", Greek "ο"): the skeleton mapping of Unicode's confusables data
   (UTS #39), as shipped by the `confusable-homoglyphs` package, restricted to characters
   whose prototype is Latin letters; drop apostrophes ("don't" → "dont");
4b. letters spelled out one by one ("k i l l", "k.i.l.l", "k-i-l-l") are joined into a word -
   as an extra clause after the text, so the original reading ("u r a") is kept too;
5. undo basic leetspeak inside words that mix letters and digits ("k1ll" → "kill");
6. collapse runs of 3+ identical characters to two ("sooo" → "soo", "killlll" → "kill");
7. keep clause boundaries as " . " / " , " tokens (negation never crosses them), other
   punctuation becomes space;
8. correct near-misspellings of a few long, distinctive crisis words with rapidfuzz
   ("sucide" → "suicide", "myslef" → "myself").
"""

from __future__ import annotations

import functools
import re
import unicodedata

MAX_SCREEN_CHARS = 20_000
HEAD_CHARS = 6_000
TAIL_CHARS = 6_000
SAMPLE_COUNT = 8
SAMPLE_CHARS = 1_000

EMOJI_WORDS: dict[str, str] = {
    "🔪": " knife ",
    "🗡": " knife ",
    "🔫": " gun ",
    "💊": " pills ",
    "🩸": " blood ",
    "⚰": " coffin ",
    "🪦": " grave ",
    "🪢": " rope ",
    "💉": " needle ",
}
_EMOJI_RE = re.compile("|".join(re.escape(k) for k in EMOJI_WORDS))

_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
# Whole runs of letters, digits, @ and $ (linear: the digit test is done on the match, since
# "[a-z0-9@$]*[0-9@$]..." backtracks quadratically on a long run without a digit).
_LEET_TOKEN_RE = re.compile(r"[a-z0-9@$]+")
_LEET_CHAR_RE = re.compile(r"[0-9@$]")
_HAS_LETTER_RE = re.compile(r"[a-z]")
# "5mg", "3am", "2nd", "mp3", "covid19": numbers glued to units or names, not leetspeak.
_NOT_LEET_RE = re.compile(r"[0-9]+[a-z]{1,4}|[a-z]+[0-9]+")
_APOSTROPHES_RE = re.compile(r"['’‘`´ʼ]")
_REPEAT_RE = re.compile(r"(.)\1{2,}")
# Three or more single letters with the same separator between each: "k i l l", "d.i.e".
_SPELLED_RE = re.compile(
    r"(?<![a-z0-9])[a-z](?P<sep>[ .\-_*~|/+]{1,2})[a-z](?:(?P=sep)[a-z])+(?![a-z0-9])"
)
# Self-censored words: "k*ll", "s#icide" → a vowel-like placeholder the fuzzy step can fix.
_MASKED_RE = re.compile(r"(?<=[a-z])[*#]+(?=[a-z])")
_CLAUSE_END_RE = re.compile(r"[.!?;:\n…]+")
_COMMA_RE = re.compile(r"[,\u2014\u2013]+|\s-\s")
_OTHER_PUNCT_RE = re.compile(r"[^a-z0-9., ]+")
_SPACES_RE = re.compile(r"\s+")
_ASCII_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_DROP_CATEGORIES = frozenset({"Mn", "Me", "Cf", "Cc", "Co", "Cs", "Cn"})

# Long, distinctive words whose misspellings are common and whose near neighbours are not
# ordinary English (short words like "kill" or "cut" are handled by the patterns themselves,
# because "bill" → "kill" would be a disaster).
FUZZY_TARGETS: tuple[str, ...] = (
    "suicide",
    "suicidal",
    "myself",
    "overdose",
    "overdosed",
    "overdosing",
    "unalive",
    "paracetamol",
    "unconscious",
    "strangled",
    "abusive",
)
FUZZY_MIN_LEN = 5
FUZZY_MAX_EDITS = 1  # optimal string alignment: one insertion, deletion, substitution or swap
_FUZZY_SET = frozenset(FUZZY_TARGETS)
_FUZZY_FIRST = frozenset(t[0] for t in FUZZY_TARGETS)
# Real words one edit away from a target (found on ESConv: "alive" → "unalive" was a bug).
_FUZZY_NEVER = frozenset(
    {"himself", "herself", "itself", "alive", "overdo", "overdone", "overdoing", "overdue",
     "overcome", "overcoming", "overrode", "suited", "abuse", "abused", "abuser", "strangler"}
)  # fmt: skip


def bounded_window(text: str) -> str:
    """The part of `text` that is screened: all of it up to MAX_SCREEN_CHARS, else head,
    tail and SAMPLE_COUNT evenly spaced samples of the middle, joined by clause breaks."""
    if len(text) <= MAX_SCREEN_CHARS:
        return text
    middle_start, middle_end = HEAD_CHARS, len(text) - TAIL_CHARS
    step = (middle_end - middle_start) // SAMPLE_COUNT
    samples = [
        text[middle_start + i * step : middle_start + i * step + SAMPLE_CHARS]
        for i in range(SAMPLE_COUNT)
    ]
    return "\n".join([text[:HEAD_CHARS], *samples, text[-TAIL_CHARS:]])


def _strip_marks(text: str) -> str:
    """NFKD, drop combining marks and invisible/control characters, NFKC back."""
    if text.isascii():  # the common case: only ASCII control characters can need removing
        return _ASCII_CONTROL_RE.sub(" ", text)
    decomposed = unicodedata.normalize("NFKD", text)
    kept = []
    for ch in decomposed:
        if ch in "\n\t":
            kept.append("\n" if ch == "\n" else " ")
        elif unicodedata.category(ch) not in _DROP_CATEGORIES:
            kept.append(ch)
    return unicodedata.normalize("NFKC", "".join(kept))


@functools.lru_cache(maxsize=1)
def confusable_table() -> dict[int, str]:
    """Non-ASCII character → the Latin letters it imitates (lower case), for `str.translate`.

    Built once from the `confusable-homoglyphs` package's copy of Unicode's confusables data.
    Raises ImportError if the package is missing (it is a dependency of the bot extra).
    """
    import importlib.resources
    import json

    data = importlib.resources.files("confusable_homoglyphs").joinpath("confusables.json")
    mapping: dict[str, list[dict[str, str]]] = json.loads(data.read_text(encoding="utf-8"))
    table: dict[int, str] = {}
    for char, entries in mapping.items():
        if len(char) != 1 or char.isascii():
            continue
        latin = [e["c"] for e in entries if e["c"].isascii() and e["c"].isalpha()]
        if not latin:
            continue
        target = latin[0]
        if char.isupper() and target == "l":
            target = "i"  # UTS #39 gives capital I the prototype "l"; a capital means an I
        table[ord(char)] = target.lower()
    return table


def fold_confusables(text: str) -> str:
    """Look-alike letters of other scripts replaced by the Latin letters they imitate."""
    if text.isascii():
        return text
    return text.translate(confusable_table())


def join_spelled_out(text: str) -> str:
    """`text`, plus (when it spells a word out letter by letter) a clause with the word joined:
    "i will k i l l myself" → "i will k i l l myself\ni will kill myself"."""
    joined = _SPELLED_RE.sub(lambda m: re.sub(r"[^a-z]", "", m.group(0)), text)
    return text if joined == text else text + "\n" + joined


def _unleet(match: re.Match[str]) -> str:
    token = match.group(0)
    if (
        _LEET_CHAR_RE.search(token) is None
        or _HAS_LETTER_RE.search(token) is None
        or _NOT_LEET_RE.fullmatch(token)
    ):
        return token
    return token.translate(_LEET)


@functools.lru_cache(maxsize=16_384)
def correct_token(token: str) -> str:
    """`token`, or the fuzzy target within one edit of it ("sucide" → "suicide")."""
    if (
        len(token) < FUZZY_MIN_LEN
        or token in _FUZZY_SET
        or token in _FUZZY_NEVER
        or token[0] not in _FUZZY_FIRST
        or not token.isalpha()
    ):
        return token
    from rapidfuzz import process
    from rapidfuzz.distance import OSA

    best = process.extractOne(
        token, FUZZY_TARGETS, scorer=OSA.distance, score_cutoff=FUZZY_MAX_EDITS
    )
    return token if best is None else best[0]


def normalize(text: str) -> str:
    """The canonical, bounded, lower-case form of `text` that crisis and guard patterns match.

    Clause breaks appear as " . " and " , " tokens; words are separated by single spaces; the
    result starts and ends with a space so patterns can use plain " word " boundaries.
    """
    text = bounded_window(text)
    text = _EMOJI_RE.sub(lambda m: EMOJI_WORDS[m.group(0)], text)
    # Before and after casefolding: Greek capital Kappa imitates "K", its small form nothing.
    text = fold_confusables(fold_confusables(_strip_marks(text)).casefold())
    text = _APOSTROPHES_RE.sub("", text)
    text = _MASKED_RE.sub("i", text)
    text = _LEET_TOKEN_RE.sub(_unleet, text)
    text = join_spelled_out(text)
    text = _REPEAT_RE.sub(r"\1\1", text)
    text = _CLAUSE_END_RE.sub(" . ", text)
    text = _COMMA_RE.sub(" , ", text)
    text = _OTHER_PUNCT_RE.sub(" ", text)
    text = text.replace(".", " . ").replace(",", " , ")
    tokens = [correct_token(t) for t in _SPACES_RE.split(text) if t]
    return " " + " ".join(tokens) + " "
