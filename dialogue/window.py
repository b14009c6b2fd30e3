"""Fit a conversation into the model's context window (pure functions, no I/O).

Shared by the bot (`bot.engine`, from its stored turns) and the evaluation (`evaluation.generate`,
from a data set's turns), so both build the prompt the same way from `ContextTurn`s.

Newest first: the system prompt and the current message (always raw) are reserved, then older
turns are added from the newest back while they fit the budget (`n_ctx` minus the reply budget).
A turn is never cut: the first one that does not fit ends the history. In the `hybrid`
representation the newest `raw_recent` turns are raw and older ones use their compressed (KeyPOS)
form, stored when the turn was written so nothing is recomputed per message — the same result as
`dialogue.context.represent_history`, without re-running spaCy.

With `blocks=True` (the default in settings) older turns are compressed `2 * raw_recent` at a
time, so between `raw_recent` and `3 * raw_recent - 1` newest turns stay raw and the prompt's
prefix stays identical for several exchanges in a row: the backend can reuse its KV cache instead of
re-evaluating every turn that has just changed from raw to compressed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dialogue.prompts import Message, build_messages

# Chat templates add a few tokens per message (ChatML: "<|im_start|>role\n" ... "<|im_end|>\n").
MESSAGE_OVERHEAD_TOKENS = 8
# The assistant header the template appends after the last message.
GENERATION_PROMPT_TOKENS = 8


def compressed_form(representation: str) -> str | None:
    """The representation older turns are stored in: hybrid → keypos, raw → none."""
    if representation == "hybrid":
        return "keypos"
    if representation in ("keypos", "nostopwords"):
        return representation
    return None


def raw_window_start(n_turns: int, raw_recent: int, blocks: bool) -> int:
    """Index (oldest first) of the first history turn kept raw in the hybrid representation."""
    older = max(n_turns - raw_recent, 0)
    if blocks and raw_recent > 0:
        # Move the boundary a block of 2 * raw_recent turns at a time: with a user turn and a
        # reply per exchange, the prefix then changes once every raw_recent exchanges.
        older -= older % (2 * raw_recent)
    return older


@dataclass(frozen=True, slots=True)
class ContextTurn:
    """One earlier turn as the window needs it: its raw text and tokens, and the compressed form
    computed when it was stored (None when there is none).

    Args:
        role: "user" or "assistant".
        representation: the form `compressed` is in ("keypos", "nostopwords"), or None.
    """

    role: str
    text: str
    tokens: int
    compressed: str | None = None
    representation: str | None = None
    compressed_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ContextReport:
    """How the context was filled (logged at debug level; contains no text)."""

    turns_available: int
    turns_included: int
    turns_compressed: int
    turns_skipped_oversize: int
    prompt_tokens: int
    raw_tokens: int
    budget_tokens: int

    @property
    def compression_ratio(self) -> float:
        """Tokens used by the included history relative to the same turns raw (1.0 = none)."""
        return self.prompt_tokens / self.raw_tokens if self.raw_tokens else 1.0


@dataclass(frozen=True, slots=True)
class BuiltContext:
    """The messages to send, and the report. `fits` is False when the current message alone
    (with the system prompt) does not fit the budget."""

    messages: list[Message]
    report: ContextReport
    fits: bool


def _choose(turn: ContextTurn, compress: bool, form: str | None) -> tuple[str, int, bool]:
    """The text and token count to use for one history turn, and whether it is compressed."""
    if (
        compress
        and form is not None
        and turn.representation == form
        and turn.compressed
        and turn.compressed_tokens is not None
    ):
        return turn.compressed, turn.compressed_tokens, True
    return turn.text, turn.tokens, False


def build_context(
    history: Sequence[ContextTurn],
    current: str,
    current_tokens: int,
    *,
    system_prompt: str | None,
    system_tokens: int,
    budget_tokens: int,
    representation: str,
    raw_recent: int = 4,
    blocks: bool = False,
) -> BuiltContext:
    """Choose which stored turns enter the prompt, newest first, within `budget_tokens`.

    Args:
        history: earlier turns of the conversation, oldest first, *excluding* the current one.
        current: the user's message now (always raw); `current_tokens` its token count.
        system_prompt: the persona; `system_tokens` its token count.
        budget_tokens: `n_ctx` minus the reply budget (`max_new_tokens`).
        representation: raw, keypos, nostopwords or hybrid.
        raw_recent: in hybrid, how many of the newest history turns stay raw.
        blocks: in hybrid, compress older turns `2 * raw_recent` at a time (stable prefix).
    """
    used = GENERATION_PROMPT_TOKENS + current_tokens + MESSAGE_OVERHEAD_TOKENS
    if system_prompt:
        used += system_tokens + MESSAGE_OVERHEAD_TOKENS
    fits = used <= budget_tokens
    form = compressed_form(representation)
    chosen: list[tuple[str, str]] = []
    raw_total = compressed = oversize = 0
    raw_from = raw_window_start(len(history), raw_recent, blocks)
    for age, turn in enumerate(reversed(history) if fits else ()):
        compress = representation != "hybrid" or len(history) - 1 - age < raw_from
        text, tokens, is_compressed = _choose(turn, compress, form)
        cost = tokens + MESSAGE_OVERHEAD_TOKENS
        if cost > budget_tokens // 2:
            oversize += 1  # a single enormous turn would crowd out everything else
            continue
        if used + cost > budget_tokens:
            break
        used += cost
        raw_total += turn.tokens + MESSAGE_OVERHEAD_TOKENS
        compressed += int(is_compressed)
        chosen.append((turn.role, text))
    chosen.reverse()
    history_tokens = used - (current_tokens + MESSAGE_OVERHEAD_TOKENS + GENERATION_PROMPT_TOKENS)
    if system_prompt:
        history_tokens -= system_tokens + MESSAGE_OVERHEAD_TOKENS
    report = ContextReport(
        turns_available=len(history),
        turns_included=len(chosen),
        turns_compressed=compressed,
        turns_skipped_oversize=oversize,
        prompt_tokens=history_tokens,
        raw_tokens=raw_total,
        budget_tokens=budget_tokens,
    )
    messages = build_messages(chosen, current, system_prompt)
    return BuiltContext(messages=messages, report=report, fits=fits)


def prompt_cost(messages: Sequence[Message], count_tokens: Callable[[str], int]) -> int:
    """A prompt's tokens counted with the same per-message overheads the builder assumes."""
    return GENERATION_PROMPT_TOKENS + sum(
        count_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages
    )
