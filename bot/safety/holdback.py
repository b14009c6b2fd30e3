"""Where a streamed reply must be held back: the earliest point a guard rule could still match.

The engine releases a reply while it streams (`bot.engine.release`), and the reply guard
(`bot.safety.guard`) judges the text so far after every piece. A character may be sent only once
no rule can still turn out to match a phrase that includes it. `hold_from(text, after)` is that
point: `text[:hold_from(...)]` may be sent. It holds back, in the normalised text the guard reads:

- every guard and claim rule, compiled with the `regex` package: a partial match (the text ends
  inside what could still become a match, `partial=True`) holds back from its start. A complete
  match the guard let through was cancelled by the words before it (a negator, a
  counterfactual), which more text cannot change;
- the crisis screen's suicide and self-harm patterns (the guard's "crisis_statement"): a partial
  match, or a complete one about the writer that is not crisis level yet (its level can still
  rise with later text, e.g. a recent time word after a past-tense one);
- the prompt-leak check: from its first shared word n-gram (a second refuses the reply), else
  from the longest tail of words that is a run of the system prompt's words;
- always the last word until whitespace follows it (it may still change: "kil" → "kill");
  a run without whitespace longer than `LONG_RUN_CHARS` (Chinese, a URL) goes out but for its
  last `LONG_RUN_CHARS`, as the fixed hold-back did;
- a reply longer than the screened window (`MAX_SCREEN_CHARS`): everything until the end.

The point is mapped back to the raw text as the longest prefix cut after whitespace whose normal
form is a prefix of the whole text's and ends before it. Cost: the patterns run from the part
already released only and prefixes' normal forms are cached: a few hundred microseconds per
streamed piece on a reply-sized text, about what the guard itself costs.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import regex

from bot.safety.guard import PromptLeakDetector, rule_patterns
from bot.safety.patterns import CRISIS_PATTERNS
from bot.safety.patterns.blocks import CrisisPattern
from bot.safety.screen import judge_span
from bot.safety.text import MAX_SCREEN_CHARS, fold_confusables, normalize

LONG_RUN_CHARS = 48
NORMALIZED_CACHE_SIZE = 256
GUARDED_CATEGORIES = frozenset({"suicide", "self_harm"})  # what "crisis_statement" refuses
_WORD_RE = re.compile(r"\S+")
_SPACE_RE = re.compile(r"\s")
# `regex` misses a partial match after a lazy counted repeat and a word boundary (".{0,30}?\b":
# found by the property test in tests/bot/engine/test_release.py); greedy repeats match the same
# texts from the same starts, and where a match could start is all that is asked here.
# Single letters one after another ("k i l l", "k.i.l.l"): normalisation joins 3 or more into a
# word in an extra clause after the text, which no raw position maps to; 1 or 2 at the end of the
# text may still become such a run ("k i " + "l l").
_SEP = r"[ .\-_*~|/+]{1,2}"
_SPELLED_RE = re.compile(
    rf"(?<![a-z0-9])[a-z](?:{_SEP}[a-z]){{2,}}(?![a-z0-9])|(?<![a-z0-9])[a-z](?:{_SEP}[a-z])?[ .\-_*~|/+]*\s$"
)
_APOSTROPHE_RE = re.compile(r"['’‘`´ʼ]")
_LAZY_REPEAT_RE = re.compile(r"(\{[0-9]*,?[0-9]*\})\?")


# A reply's prefixes are normalised again and again as it streams (pure function).
_normalized = functools.lru_cache(maxsize=NORMALIZED_CACHE_SIZE)(normalize)


def _partial(pattern: re.Pattern[str]) -> Any:
    """`pattern` for partial matching with the `regex` package (its lazy repeats made greedy)."""
    return regex.compile(_LAZY_REPEAT_RE.sub(r"\1", pattern.pattern), pattern.flags & ~re.UNICODE)


@functools.cache
def _rules() -> tuple[Any, ...]:
    return tuple(_partial(p) for p in rule_patterns())


@functools.cache
def _crisis() -> tuple[tuple[CrisisPattern, Any], ...]:
    return tuple(
        (p, _partial(p.regex)) for p in CRISIS_PATTERNS if p.category in GUARDED_CATEGORIES
    )


def hold_from(text: str, after: int = 0, leak: PromptLeakDetector | None = None) -> int:
    """How many leading characters of `text` may be sent; never fewer than `after` (already sent).

    `text` is a reply streamed so far that the guard has passed (`final=False`).
    """
    if len(text) > MAX_SCREEN_CHARS:
        return after
    cut = _spelled_out(text, after, _complete_words(text))
    if cut <= after:
        return after
    norm = _normalized(text[:cut])
    sent = _normalized(text[:after]) if after else " "
    pos = len(sent) - 1 if norm.startswith(sent) else 0
    hold = _hold_point(norm, pos, leak)
    if hold >= len(norm) - 1:
        return cut
    return _raw_cut(text, after, cut, norm, hold)


def _complete_words(text: str) -> int:
    """The end of the last whitespace (the word after it may be unfinished); a run without
    whitespace longer than LONG_RUN_CHARS keeps only its last LONG_RUN_CHARS back."""
    last = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
    if len(text) - (last + 1) > LONG_RUN_CHARS:
        return len(text) - LONG_RUN_CHARS
    return last + 1


def _spelled_out(text: str, after: int, cut: int) -> int:
    """`cut`, or the start of the first run of single letters before it (held to the end)."""
    folded = fold_confusables(fold_confusables(text[:cut]).casefold())
    folded = _APOSTROPHE_RE.sub("x", folded)  # "don't" is a word, as normalisation reads it
    if len(folded) != cut:  # letters that fold to several: no position to map, hold it all
        return after if _SPELLED_RE.search(folded) else cut
    found = _SPELLED_RE.search(folded, after)
    if found is None:
        return cut
    return max(after, max(text.rfind(c, 0, found.start()) for c in " \n\t") + 1)  # its word


def _hold_point(norm: str, pos: int, leak: PromptLeakDetector | None) -> int:
    """The earliest index of `norm` (at or after `pos`) where a rule could still be matching."""
    hold = len(norm)
    for pattern in _rules():
        for match in pattern.finditer(norm, pos, partial=True):
            if match.partial:
                hold = min(hold, match.start())
    for crisis, pattern in _crisis():
        for match in pattern.finditer(norm, pos, partial=True):
            if match.partial:
                hold = min(hold, match.start())
                continue
            verdict = judge_span(crisis, norm, match.span(), explicit_self=True)
            if verdict is not None and verdict[1] == "self":  # not crisis yet: it may rise
                hold = min(hold, match.start())
    if leak is not None:
        words = [m for m in _WORD_RE.finditer(norm) if m.group(0) not in {".", ","}]
        first = leak.hold_word([m.group(0) for m in words])
        if first is not None:
            hold = min(hold, words[first].start())
    return hold


def _raw_cut(text: str, after: int, cut: int, norm: str, hold: int) -> int:
    """The longest prefix `text[:c]` (after <= c <= cut, c just after whitespace) whose normal
    form is a prefix of `norm` ending at or before `hold` (its trailing space may be `hold`)."""

    def fits(c: int) -> bool:
        form = _normalized(text[:c])
        return norm.startswith(form) and len(form) - 1 <= hold

    cuts = [m.end() for m in _SPACE_RE.finditer(text, after, cut)]
    best, low, high = after, 0, len(cuts) - 1
    while low <= high:  # the normal form grows with the prefix: bisect, check each candidate
        mid = (low + high) // 2
        if fits(cuts[mid]):
            best, low = cuts[mid], mid + 1
        else:
            high = mid - 1
    return best
