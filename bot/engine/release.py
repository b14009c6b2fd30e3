"""What of a streamed reply may be sent yet: the held-back tail the guard still has to see.

`guarded_release` wraps the backend's stream: every delta is checked by the reply guard together
with what came before, and only text the guard has seen with `holdback` characters after it is
released. `releasable` says how much of the pending text can go out now, `trim_unfinished` drops
a sentence the token limit cut off (both pure). `Reply` is what a turn has sent so far.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from bot.safety.protocols import GuardLike

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
) -> AsyncGenerator[str, None]:
    """Yield `chunks` as the guard allows; on a refusal call `on_stop(reason)` and end.

    Args:
        guard: `guard(text_so_far, final=...)`, the safety layer's reply guard.
        holdback: characters kept back until more text (or the end) has been checked.
    """
    checked = ""  # released text
    pending = ""  # generated, guard-checked, not yet released
    try:
        async for delta in chunks:
            pending += delta
            verdict = guard(checked + pending, final=False)
            if not verdict.ok:
                on_stop(verdict.reason or "unspecified")
                return
            cut = releasable(pending, holdback)
            if cut:
                checked, pending = checked + pending[:cut], pending[cut:]
                yield checked[-cut:]
    finally:
        await chunks.aclose()
    pending = trim_unfinished(pending)
    verdict = guard(checked + pending, final=True)
    if not verdict.ok:
        on_stop(verdict.reason or "unspecified")
    elif pending:
        yield pending
