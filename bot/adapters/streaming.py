"""Platform-neutral streaming helpers for the chat adapters.

- `split_text` cuts a reply into pieces that fit a platform's message limit without breaking a
  word or a grapheme cluster (an emoji with skin tone or ZWJ family, a flag, an accented letter).
- `StreamingReply` shows a streamed reply by sending one message and editing it in place at most
  once per interval, sealing a message and starting the next when it fills up.
- `keep_typing` repeats a platform's "typing…" indicator while a reply is generated.
- `stream_reply` is the loop both platform adapters run: the engine's deltas into a
  `StreamingReply`, with the typing indicator on while it lasts.

Lengths are measured in UTF-16 code units: Telegram counts its 4,096-character limit that way,
and it is never smaller than the code-point count Discord uses, so one measure is safe for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import regex

logger = logging.getLogger(__name__)

TELEGRAM_MAX_CHARS = 4096
DISCORD_MAX_CHARS = 2000
# Grapheme clusters are looked for in a window this far past the limit, so that a cluster that
# straddles the limit is seen whole.
CLUSTER_LOOKAHEAD_CHARS = 64
# How long a reply waits for a typing indicator already in flight when generation ends.
TYPING_STOP_TIMEOUT_SECONDS = 2.0
_GRAPHEME = regex.compile(r"\X")


def text_length(text: str) -> int:
    """Length of `text` in UTF-16 code units (how Telegram counts its limits)."""
    return len(text.encode("utf-16-le")) // 2


def _skip_space(text: str) -> str:
    """`text` without its leading whitespace clusters (a space that carries a combining mark
    is a visible cluster and stays)."""
    index = 0
    for match in _GRAPHEME.finditer(text):
        if not match.group().isspace():
            break
        index = match.end()
    return text[index:]


def _fitting_clusters(text: str, limit: int) -> tuple[list[tuple[int, str]], int, bool]:
    """The whole grapheme clusters at the start of `text` that fit in `limit` UTF-16 units.

    Returns (start, cluster) pairs, the index just past them, and whether the cluster right
    after them is whitespace (so a cut exactly at the limit is a clean word break).
    """
    window = text[: limit + CLUSTER_LOOKAHEAD_CHARS]
    clusters: list[tuple[int, str]] = []
    used = end = 0
    next_is_space = False
    for match in _GRAPHEME.finditer(window):
        if match.end() == len(window) and len(window) < len(text):
            break  # this cluster may continue past the window
        used += text_length(match.group())
        if used > limit:
            next_is_space = match.group().isspace()
            break
        clusters.append((match.start(), match.group()))
        end = match.end()
    return clusters, end, next_is_space


def _best_break(clusters: list[tuple[int, str]], end: int) -> int | None:
    """Start of the whitespace cluster to cut at: a paragraph or line break in the second half
    of the piece if there is one, else the last space; None when there is no whitespace."""
    spaces = [(start, c) for start, c in clusters if c.isspace() and start > 0]
    if not spaces:
        return None
    late_newlines = [start for start, c in spaces if "\n" in c and start >= end // 2]
    return late_newlines[-1] if late_newlines else spaces[-1][0]


def split_once(text: str, limit: int) -> tuple[str, str]:
    """Split `text` into a head that fits `limit` (UTF-16 units) and the rest.

    The cut is at a line or word break when there is one; a single "word" longer than the
    limit (a long link) is cut between grapheme clusters, never inside one. Whitespace at the
    cut is dropped. Only a lone grapheme cluster longer than the limit (hundreds of combining
    marks) is ever cut inside.
    """
    if limit < 2:
        raise ValueError(f"limit must be at least 2, got {limit}")
    text = _skip_space(text)
    if text_length(text) <= limit:
        return text, ""
    clusters, end, next_is_space = _fitting_clusters(text, limit)
    if not clusters:
        cut = limit // 2  # a code point is at most 2 UTF-16 units, so this fits
        return text[:cut], text[cut:]
    found = None if next_is_space else _best_break(clusters, end)
    cut = end if found is None else found
    return text[:cut].rstrip(), _skip_space(text[cut:])


def split_text(text: str, limit: int) -> list[str]:
    """Split `text` into pieces of at most `limit` UTF-16 units each (see `split_once`)."""
    pieces: list[str] = []
    rest = text
    while text_length(rest) > limit:
        head, rest = split_once(rest, limit)
        pieces.append(head)
    rest = _skip_space(rest).rstrip()
    if rest:
        pieces.append(rest)
    return pieces


class ReplySink(Protocol):
    """Where a streamed reply goes: one platform chat."""

    async def send(self, text: str) -> Any:
        """Send a new message and return a handle to edit it later."""
        ...

    async def edit(self, handle: Any, text: str) -> None:
        """Replace the text of a message sent earlier."""
        ...


class StreamingReply:
    """Shows a streamed reply as a message edited in place, split at the platform's limit.

    Feed it deltas with `feed`, then call `finish`. `feed` never waits for the network: a
    background task sends and edits, at most once per `edit_interval_s`, so the model (and its
    lock) is never held up by a slow platform. Network calls are made one at a time and never
    cancelled half-way (a cancelled send could be repeated); `finish` flushes the final state
    and re-raises any send failure.
    """

    def __init__(
        self,
        sink: ReplySink,
        *,
        limit: int,
        edit_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._limit = limit
        self._interval = edit_interval_s
        self._clock = clock
        self._sealed: list[str] = []  # finished pieces, in order
        self._pending = ""  # the piece still growing
        self._handles: list[Any] = []  # one per message sent so far
        self._shown: list[str] = []  # what each sent message currently shows
        self._last_flush = float("-inf")
        self._wakeup = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._flushing = False
        self._closing = False

    @property
    def text(self) -> str:
        """Everything fed so far, as the pieces it will be shown in, joined by newlines."""
        return "\n".join([*self._sealed, self._pending])

    @property
    def messages_sent(self) -> int:
        """How many platform messages this reply has used so far."""
        return len(self._handles)

    async def feed(self, delta: str) -> None:
        """Add a chunk of reply text (shown by the background task when an edit is due)."""
        if self._pump is not None and self._pump.done():
            self._pump.result()  # a send failed: stop the stream now
        self._pending += delta
        while text_length(self._pending) > self._limit:
            head, self._pending = split_once(self._pending, self._limit)
            self._sealed.append(head)
        if self._pump is None:
            self._pump = asyncio.create_task(self._run_pump())
        self._wakeup.set()

    async def finish(self) -> list[str]:
        """Flush everything and return the texts of the messages as finally shown."""
        pump, self._pump = self._pump, None
        self._closing = True
        if pump is not None:
            if not self._flushing:  # waiting: safe to cancel, nothing in flight
                pump.cancel()
            try:
                await pump
            except asyncio.CancelledError:
                if not pump.cancelled():
                    raise  # it is us who is being cancelled
        await self._flush()
        return list(self._shown)

    def _due(self) -> float:
        """Seconds until the next edit is allowed (<= 0: now)."""
        return self._last_flush + self._interval - self._clock()

    async def _run_pump(self) -> None:
        """Show new text whenever some arrived and an edit is due."""
        while True:
            await self._wakeup.wait()
            while (delay := self._due()) > 0:
                self._wakeup.clear()  # woken early by new text: re-check the clock
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), delay)
            self._wakeup.clear()
            self._flushing = True
            try:
                await self._flush()
            finally:
                self._flushing = False
            if self._closing:  # finish() is waiting for this flush, then flushes the rest
                return

    async def _flush(self) -> None:
        """Send or edit whatever changed since the last flush."""
        changed = False
        # Sealed pieces never change, so filtering blanks keeps indexes stable.
        pieces = [p for p in (*self._sealed, self._pending.strip()) if p.strip()]
        for index, piece in enumerate(pieces):
            if index < len(self._handles):
                if self._shown[index] != piece:
                    await self._sink.edit(self._handles[index], piece)
                    self._shown[index] = piece
                    changed = True
            else:
                self._handles.append(await self._sink.send(piece))
                self._shown.append(piece)
                changed = True
        if changed:
            self._last_flush = self._clock()


@contextlib.asynccontextmanager
async def keep_typing(
    send_action: Callable[[], Awaitable[object]], interval_s: float
) -> AsyncIterator[None]:
    """Call `send_action` now and every `interval_s` seconds until the block exits.

    On exit an indicator already on its way is allowed to finish (up to
    `TYPING_STOP_TIMEOUT_SECONDS`) rather than cut off, so it cannot land after the reply and
    show "typing…" again. A failing indicator is logged (type only) and otherwise ignored.
    """
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            try:
                await send_action()
            except Exception as exc:  # boundary: typing is cosmetic
                logger.warning("typing indicator failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=TYPING_STOP_TIMEOUT_SECONDS)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def stream_reply(
    deltas: AsyncGenerator[str, None],
    sink: ReplySink,
    *,
    limit: int,
    edit_interval_s: float,
    send_typing: Callable[[], Awaitable[object]],
    typing_interval_s: float,
) -> list[str]:
    """Show the engine's reply `deltas` in one chat; returns the messages as finally shown.

    An empty list means nothing visible was sent: the caller must then say something (a
    person is never left unanswered). If sending fails, what was said so far is shown, the
    engine's turn ends at once and the error propagates to the adapter's error handler.
    """
    reply = StreamingReply(sink, limit=limit, edit_interval_s=edit_interval_s)
    # aclosing: if sending fails, the engine's turn ends now (storing what was shown and
    # freeing the user's slot) instead of whenever the generator is collected.
    try:
        async with (
            keep_typing(send_typing, typing_interval_s),
            contextlib.aclosing(deltas) as stream,
        ):
            async for delta in stream:
                await reply.feed(delta)
    except BaseException:
        with contextlib.suppress(Exception):  # show what was said; the handler adds a fallback
            await reply.finish()
        raise
    return await reply.finish()


class KeyedLocks:
    """One FIFO `asyncio.Lock` per key (e.g. chat + user), dropped when nobody needs it.

    Adapters hold it around a whole reply so one person's replies appear in the order of their
    messages even though sending runs in the background: taking an uncontended lock does not
    suspend, so handlers queue in the order their updates arrived.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the lock for `key` for the duration of the block."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
