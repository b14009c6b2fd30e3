"""The `echo` backend: deterministic replies, for tests and for trying the plumbing without a
model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from bot.backends.base import GenOptions
from dialogue.prompts import Message

if TYPE_CHECKING:
    from bot.config import Settings


class EchoBackend:
    """Deterministic: replies "You said: <last user message>", one word per chunk (no template,
    no tokenizer: contents are only echoed as text)."""

    name = "echo"
    parallel = False

    def __init__(self, n_ctx: int = 2048) -> None:
        self.n_ctx = n_ctx

    @classmethod
    def from_settings(cls, settings: Settings) -> EchoBackend:
        """Build from settings (uses `model.n_ctx`)."""
        return cls(n_ctx=settings.model.n_ctx)

    def generate(self, messages: Sequence[Message], options: GenOptions) -> Iterator[str]:
        """Yield the echo reply word by word, cut at `max_new_tokens` words."""
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        words = ["You", "said:", *last.split()][: options.max_new_tokens]
        for index, word in enumerate(words):
            yield word if index == 0 else " " + word

    def count_tokens(self, text: str) -> int:
        """Whitespace-separated words."""
        return len(text.split())
