"""Test doubles for engine unit tests (real parts everywhere else).

`FakeBackend` follows llm's `MockModel`: `enqueue([...chunks])` sets the next reply, `.history`
records every call. `FakeSafety` implements the safety contract with substring rules.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.backends import EchoBackend, GenOptions
from bot.errors import BackendError
from dialogue.prompts import Message

DEFAULT_REPLY = ("I hear ", "you. ", "Tell me more.")


class FakeBackend:
    """A scripted backend: each `generate` call plays the next enqueued reply.

    Args:
        n_ctx: context window it claims (tokens = whitespace words).
        parallel: False like the local model (the engine then serialises generation).
    """

    name = "fake"

    def __init__(self, n_ctx: int = 2048, parallel: bool = False) -> None:
        self.n_ctx = n_ctx
        self.parallel = parallel
        self.history: list[tuple[list[Message], GenOptions]] = []
        self._queue: list[list[str | BaseException]] = []
        self.gate: threading.Event | None = None  # when set, chunks wait for the gate
        self.started = threading.Event()
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def enqueue(self, chunks: Iterable[str | BaseException]) -> None:
        """Queue the next reply; an exception in the list is raised at that point."""
        self._queue.append(list(chunks))

    def generate(self, messages: Sequence[Message], options: GenOptions) -> Iterator[str]:
        """Play the next queued reply (or a default one)."""
        self.history.append((list(messages), options))
        script = self._queue.pop(0) if self._queue else list(DEFAULT_REPLY)
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.started.set()
        try:
            for item in script:
                if self.gate is not None and not self.gate.wait(timeout=10):
                    raise BackendError("test gate never opened")
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            with self._lock:
                self.active -= 1

    def count_tokens(self, text: str) -> int:
        """Whitespace-separated words."""
        return len(text.split())


class RecordingEchoBackend(EchoBackend):
    """The real echo backend that also keeps every prompt it was given (`.prompts`)."""

    def __init__(self, n_ctx: int = 2048) -> None:
        super().__init__(n_ctx)
        self.prompts: list[list[Message]] = []

    def generate(self, messages: Sequence[Message], options: GenOptions) -> Iterator[str]:
        """Record the prompt, then echo."""
        self.prompts.append(list(messages))
        return super().generate(messages, options)

    def prompt_text(self, index: int) -> str:
        """Every message content of the `index`-th prompt, joined (for "is X in it" checks)."""
        return "\n".join(m["content"] for m in self.prompts[index])


@dataclass(frozen=True)
class FakeScreen:
    """ScreenResult-shaped."""

    crisis: bool = False
    category: str | None = None
    level: str = "none"
    matched: str | None = None
    subject: str = "self"


@dataclass(frozen=True)
class FakeGuard:
    """GuardResult-shaped."""

    ok: bool = True
    reason: str | None = None


@dataclass
class FakeSafety:
    """Crisis when the text contains a `crisis_words` key; guard fails on `blocked` substrings."""

    crisis_words: dict[str, str] = field(default_factory=lambda: {"end it all": "suicide"})
    concern_words: dict[str, str] = field(default_factory=dict)
    blocked: tuple[str, ...] = ("FORBIDDEN",)
    screened: list[str] = field(default_factory=list)
    guarded: list[tuple[str, bool]] = field(default_factory=list)
    contexts: list[tuple[tuple[str, ...], bool]] = field(default_factory=list)

    async def screen(
        self, text: str, context: Sequence[str] = (), *, raised: bool = False
    ) -> FakeScreen:
        """Substring rules, case-insensitive (context and raised are recorded, not used)."""
        self.screened.append(text)
        self.contexts.append((tuple(context), raised))
        lowered = text.lower()
        for word, category in self.crisis_words.items():
            if word in lowered:
                return FakeScreen(True, category, "crisis", word)
        for word, category in self.concern_words.items():
            if word in lowered:
                return FakeScreen(False, category, "concern", word)
        return FakeScreen()

    def checkin_reply(self, result: FakeScreen, country: str | None) -> str:
        """A fixed check-in naming the category."""
        return f"CHECKIN[{result.category}] Are you thinking of ending your life?"

    def answers_yes(self, text: str) -> bool:
        """Starts with yes."""
        return text.lower().startswith("yes")

    def crisis_reply(self, result: FakeScreen, country: str | None, language: str | None) -> str:
        """A fixed reply naming the category and country, so tests can see both."""
        return f"CRISIS[{result.category}|{country}] Please call your local emergency number."

    def guard(self, reply_so_far: str, *, final: bool) -> FakeGuard:
        """Fails when a blocked substring appears."""
        self.guarded.append((reply_so_far, final))
        for word in self.blocked:
            if word in reply_so_far:
                return FakeGuard(False, "blocked_word")
        return FakeGuard()

    def releasable(self, reply_so_far: str, sent: int) -> int:
        """Everything up to the last whitespace (the last word may be unfinished)."""
        last = max(reply_so_far.rfind(" "), reply_so_far.rfind("\n"))
        return max(sent, last + 1)

    def fallback_reply(self) -> str:
        """Fixed fallback."""
        return "FALLBACK: I'm here with you."


async def command_text(engine: Any, text: str, *, platform: str, user_id: str) -> str | None:
    """A command typed in a private chat, answered by the platforms' real dispatcher, as text;
    None if `text` is not a command."""
    from bot.adapters.commands import parse_command, run_command

    command = parse_command(text)
    if command is None:
        return None
    reply = await run_command(
        engine, *command, platform=platform, user_id=user_id, private=True, admin=False
    )
    return reply.text
