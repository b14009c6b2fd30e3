"""Per-user message rate limit for the chat adapters (a sliding one-minute window).

Written by hand rather than taken from a library because it must be per key, in memory, on the
bot's event loop, with an injectable clock for deterministic tests, and it is a few lines:
`limits`/`aiolimiter` offer either global buckets or background timers and wall-clock time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 60.0
# Forget idle users after this many tracked keys, so a flood of one-off senders cannot grow the
# table without bound.
PRUNE_AFTER_KEYS = 4096


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The verdict on one incoming message.

    Args:
        allowed: handle the message.
        notify: the message is refused and this is the first refusal in the current window, so
            the person should be told (kindly) once instead of on every message.
        retry_after_s: seconds until the next message would be allowed (0 when allowed).
    """

    allowed: bool
    notify: bool
    retry_after_s: float


class RateLimiter:
    """Allows each key at most `per_minute` events in any sliding window (0 = unlimited).

    Args:
        per_minute: events allowed per window (the name is historical: with a longer
            `window_seconds` it is "per window").
        window_seconds: the window's length; 60 s by default, an hour for exports.
    """

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        if per_minute < 0:
            raise ValueError(f"per_minute must be >= 0, got {per_minute}")
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds}")
        self._per_minute = per_minute
        self._window = window_seconds
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._warned_until: dict[str, float] = {}

    def check(self, key: str) -> RateDecision:
        """Record one message from `key` and say whether to handle it."""
        if self._per_minute == 0:
            return RateDecision(allowed=True, notify=False, retry_after_s=0.0)
        now = self._clock()
        if len(self._seen) > PRUNE_AFTER_KEYS:
            self._prune(now)
        stamps = self._seen.setdefault(key, deque())
        while stamps and stamps[0] <= now - self._window:
            stamps.popleft()
        if len(stamps) < self._per_minute:
            stamps.append(now)
            return RateDecision(allowed=True, notify=False, retry_after_s=0.0)
        retry_after = stamps[0] + self._window - now
        notify = self._warned_until.get(key, float("-inf")) <= now
        if notify:
            self._warned_until[key] = now + retry_after
        return RateDecision(allowed=False, notify=notify, retry_after_s=retry_after)

    def _prune(self, now: float) -> None:
        for key in [k for k, s in self._seen.items() if not s or s[-1] <= now - self._window]:
            del self._seen[key]
            self._warned_until.pop(key, None)
