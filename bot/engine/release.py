"""What of a streamed reply may be sent yet: what no guard rule can still be matching.

`guarded_release` wraps the backend's stream: every delta is checked by the reply guard together
with what came before, and text is released up to where a guard rule could still be matching a
phrase that has not finished arriving (`hold`: the safety layer's `releasable`, see
bot.safety.holdback), and, when `holdback` > 0, never within the last `holdback` characters
either (`releasable`, the fixed tail, pure). `trim_unfinished` drops a sentence the token limit
cut off (pure). `Reply` is what a turn has sent so far.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from bot.safety.protocols import GuardLike

SENTENCE_TAIL_PIECES = 32  # the last pieces of the token budget go out whole sentences only
SENTENCE_FINAL_CHARS = frozenset(".!?…\"')]*")
SENTENCE_END_RE = re.compile(r"[.!?…][\"')\]]*(?=\s|$)")


@dataclass
class Reply:
    """What has been sent to the person during one turn."""

    sent: str = ""
    stored: bool = False
    guard_reason: str | None = None

    def add(self, text: str) -> str:
        self.sent += text
        return text


def releasable(pending: str, holdback: int) -> int:
    """How many leading characters of `pending` may be sent: all but the last `holdback`,
    cut after a whitespace so a word is not split (unless a long run has no whitespace)."""
    limit = len(pending) - holdback
    if limit <= 0:
        return 0
    if holdback == 0:
        return len(pending)
    cut = max(pending.rfind(" ", 0, limit), pending.rfind("\n", 0, limit))
    if cut >= 0:
        return cut + 1
    return limit if limit > holdback else 0  # a long run without spaces (e.g. Chinese)


def trim_unfinished(tail: str) -> str:
    """Drop a trailing unfinished sentence (a reply cut by the token limit) from the held-back
    tail, when the tail has an earlier sentence end to stop at."""
    stripped = tail.rstrip()
    if not stripped or stripped[-1] in SENTENCE_FINAL_CHARS:
        return tail
    ends = list(SENTENCE_END_RE.finditer(tail))
    return tail[: ends[-1].end()] if ends else tail


async def guarded_release(
    chunks: AsyncGenerator[str, None],
    guard: Callable[..., GuardLike],
    holdback: int,
    on_stop: Callable[[str], None],
    hold: Callable[[str, int], int] | None = None,
    max_pieces: int | None = None,
) -> AsyncGenerator[str, None]:
    """Yield `chunks` as the guard allows; on a refusal call `on_stop(reason)` and end.

    Args:
        guard: `guard(text_so_far, final=...)`, the safety layer's reply guard.
        holdback: characters kept back until more text (or the end) has been checked (0: none
            beyond what `hold` keeps).
        hold: `hold(text_so_far, sent)`, how many leading characters of the guard-passed text
            may be sent (never fewer than `sent`); None: the fixed `holdback` tail alone.
        max_pieces: the token budget (a piece is about a token): within its last
            SENTENCE_TAIL_PIECES only whole sentences go out, and a reply that used it all ends
            at its last whole sentence (the limit cut the rest off mid-sentence).
    """
    checked = ""  # released text
    pending = ""  # generated, guard-checked, not yet released
    pieces = 0
    sentences_from = None if max_pieces is None else max_pieces - SENTENCE_TAIL_PIECES
    try:
        async for delta in chunks:
            pending += delta
            pieces += 1
            verdict = guard(checked + pending, final=False)
            if not verdict.ok:
                on_stop(verdict.reason or "unspecified")
                return
            cut = releasable(pending, holdback)
            if hold is not None:
                cut = min(cut, hold(checked + pending, len(checked)) - len(checked))
            if sentences_from is not None and pieces >= sentences_from:
                ends = list(SENTENCE_END_RE.finditer(pending))
                cut = min(cut, ends[-1].end() if ends else 0)
            if cut:
                checked, pending = checked + pending[:cut], pending[cut:]
                yield checked[-cut:]
    finally:
        await chunks.aclose()
    pending = trim_unfinished(pending)
    cut_off = max_pieces is not None and pieces >= max_pieces
    if cut_off and checked.strip() and SENTENCE_END_RE.search(pending) is None:
        pending = ""  # the limit cut a sentence that has not begun to show: leave it out
    verdict = guard(checked + pending, final=True)
    if not verdict.ok:
        on_stop(verdict.reason or "unspecified")
    elif pending:
        yield pending
