"""Splitting at platform limits, throttled in-place edits, typing, and the per-user rate limit."""

from __future__ import annotations

import asyncio

import pytest
import regex
from hypothesis import assume, example, given, settings, strategies as st

from bot.adapters.ratelimit import RateLimiter
from bot.adapters.streaming import (
    DISCORD_MAX_CHARS,
    TELEGRAM_MAX_CHARS,
    StreamingReply,
    keep_typing,
    split_once,
    split_text,
    text_length,
)

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one grapheme, 11 units
FLAG = "\U0001f1eb\U0001f1f7"  # 🇫🇷
WAVE_DARK = "\U0001f44b\U0001f3ff"  # 👋🏿
ACCENT = "e\u0301"  # é as e + combining acute


def clusters(text: str) -> list[str]:
    """Visible grapheme clusters of `text`."""
    return [c for c in regex.findall(r"\X", text) if not c.isspace()]


def words(text: str) -> list[str]:
    """Runs of visible grapheme clusters. Unlike str.split, a space that carries a combining
    mark (" \u0301") is a visible cluster, not a separator."""
    runs, current = [], ""
    for cluster in regex.findall(r"\X", text):
        if cluster.isspace():
            if current:
                runs.append(current)
            current = ""
        else:
            current += cluster
    return [*runs, current] if current else runs


def test_text_length_counts_utf16_units() -> None:
    assert text_length("abc") == 3
    assert text_length(FLAG) == 4
    assert text_length(FAMILY) == 11


def test_short_text_is_one_piece() -> None:
    assert split_text("hello there", 4096) == ["hello there"]
    assert split_text("   \n ", 4096) == []


def test_split_prefers_word_breaks() -> None:
    pieces = split_text("alpha beta gamma delta", 12)
    assert pieces == ["alpha beta", "gamma delta"]


def test_split_prefers_a_late_line_break() -> None:
    text = "first line here\nsecond part goes on"
    assert split_text(text, 24)[0] == "first line here"


def test_emoji_at_the_limit_moves_whole() -> None:
    text = "a" * 9 + FAMILY + " tail"
    head, rest = split_once(text, 15)
    assert head == "a" * 9  # the 11-unit family would overflow: it is not cut
    assert rest.startswith(FAMILY)


def test_word_longer_than_limit_is_cut_between_clusters() -> None:
    text = (WAVE_DARK + FLAG + ACCENT) * 50
    pieces = split_text(text, 20)
    assert all(text_length(p) <= 20 for p in pieces)
    assert [c for p in pieces for c in clusters(p)] == clusters(text)


@pytest.mark.parametrize("limit", [TELEGRAM_MAX_CHARS, DISCORD_MAX_CHARS])
def test_long_reply_at_platform_limits(limit: int) -> None:
    words = ["I", "hear", "you", FAMILY, "and", "that", "sounds", "hard", WAVE_DARK, ACCENT]
    text = " ".join(words[i % len(words)] for i in range(3000))
    pieces = split_text(text, limit)
    assert len(pieces) > 1
    assert all(text_length(p) <= limit for p in pieces)
    assert [w for p in pieces for w in p.split()] == text.split()


TEXT_ALPHABET = st.sampled_from(
    ["a", "b", "é", " ", " ", "\n", "\n\n", FAMILY, FLAG, WAVE_DARK, ACCENT, "\u0301", "字", "\t"]
)


@settings(max_examples=500, deadline=None)
@example(parts=["a", " ", "\u0301", FAMILY, " b"], limit=12)  # a space carrying a combining mark
@given(parts=st.lists(TEXT_ALPHABET, max_size=200), limit=st.integers(min_value=12, max_value=60))
def test_split_properties(parts: list[str], limit: int) -> None:
    text = "".join(parts)
    assume(all(text_length(c) <= limit for c in clusters(text)))
    pieces = split_text(text, limit)
    assert all(p and text_length(p) <= limit for p in pieces)
    # Nothing visible is lost, duplicated or cut inside a grapheme cluster.
    assert [c for p in pieces for c in clusters(p)] == clusters(text)
    # Words that fit the limit are never broken.
    if all(text_length(w) <= limit for w in words(text)):
        assert [w for p in pieces for w in words(p)] == words(text)


def test_split_rejects_a_silly_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_once("abc", 1)


class RecordingSink:
    """A ReplySink that records every call, for asserting on edits."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, int, str]] = []
        self.messages: list[str] = []

    async def send(self, text: str) -> int:
        self.messages.append(text)
        self.ops.append(("send", len(self.messages) - 1, text))
        return len(self.messages) - 1

    async def edit(self, handle: int, text: str) -> None:
        assert self.messages[handle] != text, "an edit that changes nothing"
        self.messages[handle] = text
        self.ops.append(("edit", handle, text))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    """Let the reply's background task run until it waits again."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_edits_are_throttled_to_the_interval() -> None:
    sink, clock = RecordingSink(), FakeClock()
    reply = StreamingReply(sink, limit=4096, edit_interval_s=60.0, clock=clock)
    await reply.feed("Hello")
    await settle()
    for _ in range(100):
        await reply.feed(" there")
        await settle()
    assert [op[0] for op in sink.ops] == ["send"]  # the clock did not move: no edit yet
    shown = await reply.finish()
    assert [op[0] for op in sink.ops] == ["send", "edit"]
    assert shown == ["Hello" + " there" * 100]


async def test_one_edit_per_elapsed_interval() -> None:
    sink, clock = RecordingSink(), FakeClock()
    reply = StreamingReply(sink, limit=4096, edit_interval_s=1.0, clock=clock)
    for index in range(10):
        await reply.feed(f" w{index}")
        await settle()
        clock.now += 0.5  # two deltas per interval
    await reply.finish()
    kinds = [op[0] for op in sink.ops]
    assert kinds[0] == "send"
    assert kinds.count("edit") == 5  # 4 throttled edits + the final flush
    assert sink.messages == ["w0 w1 w2 w3 w4 w5 w6 w7 w8 w9"]


async def test_feed_never_waits_for_the_network() -> None:
    gate = asyncio.Event()

    class SlowSink(RecordingSink):
        async def send(self, text: str) -> int:
            await gate.wait()  # a platform that takes its time
            return await super().send(text)

    sink = SlowSink()
    reply = StreamingReply(sink, limit=4096, edit_interval_s=0.0)
    await reply.feed("one")
    await settle()
    for word in (" two", " three"):
        await reply.feed(word)  # returns although the send is still in flight
    assert sink.ops == []
    gate.set()
    assert await reply.finish() == ["one two three"]
    assert [op[0] for op in sink.ops] == ["send", "edit"]  # the in-flight send was not repeated


async def test_a_failed_send_surfaces() -> None:
    class BrokenSink(RecordingSink):
        async def send(self, text: str) -> int:
            raise ConnectionError("platform down")

    reply = StreamingReply(BrokenSink(), limit=4096, edit_interval_s=0.0)
    await reply.feed("hello")
    await settle()
    with pytest.raises(ConnectionError):
        await reply.feed(" again")  # the stream stops instead of generating for nobody


async def test_stream_splits_into_several_messages() -> None:
    sink, clock = RecordingSink(), FakeClock()
    reply = StreamingReply(sink, limit=50, edit_interval_s=1.0, clock=clock)
    words = [f"{FLAG}word{i}" for i in range(60)]
    for word in words:
        await reply.feed(" " + word)
        await settle()
        clock.now += 0.3
    shown = await reply.finish()
    assert shown == sink.messages
    assert len(shown) > 3 and all(text_length(m) <= 50 for m in shown)
    assert " ".join(shown).split() == words
    assert shown == split_text(" ".join(words), 50)


async def test_delayed_flush_shows_text_when_the_model_pauses() -> None:
    sink = RecordingSink()
    reply = StreamingReply(sink, limit=4096, edit_interval_s=0.05)
    await reply.feed("first")
    await settle()
    await reply.feed(" second")  # too soon: waits for the interval
    await settle()
    assert sink.messages == ["first"]
    await asyncio.sleep(0.3)  # the model is silent; the pending text is shown anyway
    assert sink.messages == ["first second"]
    await reply.finish()
    assert [op[0] for op in sink.ops] == ["send", "edit"]


async def test_whitespace_only_reply_sends_nothing() -> None:
    sink = RecordingSink()
    reply = StreamingReply(sink, limit=4096, edit_interval_s=1.0)
    await reply.feed("   \n")
    assert await reply.finish() == []
    assert sink.ops == []


async def test_keep_typing_repeats_and_survives_errors() -> None:
    calls: list[int] = []

    async def action() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("platform hiccup")

    async with keep_typing(action, 0.01):
        await asyncio.sleep(0.1)
    count = len(calls)
    assert count >= 3  # it went on after the failure
    await asyncio.sleep(0.05)
    assert len(calls) == count  # and stopped with the block


def test_rate_limiter_sliding_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, clock=clock)
    assert [limiter.check("u").allowed for _ in range(3)] == [True, True, True]
    first = limiter.check("u")
    assert not first.allowed and first.notify and first.retry_after_s == pytest.approx(60)
    again = limiter.check("u")
    assert not again.allowed and not again.notify  # told once, not on every message
    assert limiter.check("someone else").allowed
    clock.now += 60.01
    assert limiter.check("u").allowed


def test_rate_limiter_zero_means_unlimited() -> None:
    limiter = RateLimiter(0)
    assert all(limiter.check("u").allowed for _ in range(1000))
    with pytest.raises(ValueError):
        RateLimiter(-1)
