"""Dialogues → token windows whose labels are the assistant turns only.

One sample is a window of consecutive turns of one dialogue, rendered with the base model's chat
template exactly as Solace serves it (`dialogue.prompts.build_messages` with `SYSTEM_PROMPT`):

    [system prompt] [context: earlier turns, in `context_representation`] [block: raw turns]

Every assistant turn in the *block* is a target (multi-target packing: a 20-turn dialogue costs
one or two forward passes, not ten). Block turns are always raw — a user turn there is the
"current message" of the reply after it, and an assistant turn there is itself a target — so the
context representation applies to the *context* turns only: the whole turns before the block that
fit in the window (`history_tokens` are reserved for them), oldest dropped first, rendered with
`dialogue.context.represent_history` just as the bot renders its older memory. Windows never cut
a turn; an exchange too long for `max_seq_len` is skipped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dialogue.types import Dialogue
    from trainer.config import TrainConfig

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Tokens of slack per exchange when planning windows (tokenising a whole window can merge a
# token or two across a turn boundary).
PLAN_SLACK_TOKENS = 2
# Template tokens around one turn's text (ChatML: <|im_start|>, role, newline, <|im_end|>, newline).
TURN_OVERHEAD_TOKENS = 5


class DataError(ValueError):
    """The training data cannot be prepared; the message says what to change."""


@dataclass(frozen=True)
class Sample:
    """One training window: token ids and labels (IGNORE_INDEX where there is no target)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def num_targets(self) -> int:
        """Number of target tokens (label positions that count in the loss)."""
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


@dataclass
class DataStats:
    """What data preparation produced and skipped; saved as data_stats.json."""

    dialogues: int = 0
    samples: int = 0
    tokens: int = 0
    target_tokens: int = 0
    target_turns: int = 0
    context_turns: int = 0
    skipped_leading_assistant_turns: int = 0
    skipped_trailing_user_turns: int = 0
    skipped_long_exchanges: int = 0
    longest_exchange_tokens: int = 0
    system_prompt_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class _Turn:
    role: str
    text: str
    strategy: str | None


def conversation_turns(dialogue: Dialogue, stats: DataStats | None = None) -> list[_Turn]:
    """Merge same-speaker runs, drop empty text, and start at the first user turn.

    A merged assistant run keeps the strategy of its first labelled utterance: the served model
    names one strategy per reply, and the bot strips exactly one prefix.
    """
    merged: list[_Turn] = []
    for turn in dialogue.turns:
        text = " ".join(turn.text.split())
        if not text:
            continue
        if merged and merged[-1].role == turn.role:
            prev = merged[-1]
            merged[-1] = _Turn(prev.role, f"{prev.text}\n{text}", prev.strategy or turn.strategy)
        else:
            merged.append(_Turn(turn.role, text, turn.strategy))
    # Users always speak first to Solace; a supporter's opening line has no context to learn from.
    while merged and merged[0].role == "assistant":
        merged.pop(0)
        if stats:
            stats.skipped_leading_assistant_turns += 1
    if merged and merged[-1].role == "user":
        merged.pop()
        if stats:
            stats.skipped_trailing_user_turns += 1
    return merged


class WindowBuilder:
    """Turns dialogues into `Sample`s for one tokenizer and one config."""

    def __init__(self, tokenizer: Any, cfg: TrainConfig) -> None:
        from dialogue.prompts import SYSTEM_PROMPT

        if not getattr(tokenizer, "is_fast", False):
            raise DataError("the tokenizer must be a fast (Rust) tokenizer: offsets are needed")
        if not tokenizer.chat_template:
            raise DataError(
                "the base model's tokenizer has no chat template; set chat_template in the config"
            )
        self.tok = tokenizer
        self.cfg = cfg
        self.system_prompt = SYSTEM_PROMPT if cfg.use_system_prompt else None

    # -- rendering -------------------------------------------------------------------------
    def _render(self, messages: list[dict[str, str]], gen: bool = False) -> str:
        from jinja2 import TemplateError

        if not messages:
            return ""
        try:
            return str(
                self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            )
        except TemplateError as exc:
            raise DataError(
                f"the chat template refused a system/user/assistant conversation ({exc}); "
                "set chat_template in the config or use_system_prompt = false"
            ) from exc

    def render_window(
        self, context: Sequence[tuple[str, str]], block: Sequence[tuple[str, str]]
    ) -> tuple[str, list[tuple[int, int]], list[tuple[int, int]]]:
        """Render context + block; return the text, target char spans and block turn spans."""
        from dialogue.prompts import build_messages

        messages = build_messages(list(context) + list(block), None, self.system_prompt)
        text = self._render(messages)
        first_block = len(messages) - len(block)
        targets: list[tuple[int, int]] = []
        turn_spans: list[tuple[int, int]] = []
        rendered: dict[tuple[int, bool], str] = {}  # prefix renders, each computed once

        def prefix(m: int, gen: bool) -> str:
            if (m, gen) not in rendered:
                rendered[(m, gen)] = self._render(messages[:m], gen=gen)
            return rendered[(m, gen)]

        for m in range(first_block, len(messages)):
            start_text = prefix(m, messages[m]["role"] == "assistant")
            end_text = prefix(m + 1, False) if m + 1 < len(messages) else text
            if not (end_text.startswith(start_text) and text.startswith(end_text)):
                raise DataError(
                    "the chat template does not render a conversation as a sequence of "
                    "appendable turns, so assistant turns cannot be located; set chat_template "
                    "to one that does (e.g. ChatML)"
                )
            turn_spans.append((len(start_text), len(end_text)))
            if messages[m]["role"] == "assistant":
                targets.append((len(start_text), len(end_text)))
        return text, targets, turn_spans

    def tokenize(self, text: str, targets: list[tuple[int, int]], enc: Any = None) -> Sample:
        """Tokenise a rendered window; a token is a target if it starts inside a target span."""
        if enc is None:
            enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        labels = []
        span_i = 0
        for tok_id, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
            while span_i < len(targets) and start >= targets[span_i][1]:
                span_i += 1
            inside = span_i < len(targets) and targets[span_i][0] <= start < targets[span_i][1]
            labels.append(tok_id if inside else IGNORE_INDEX)
        return Sample(list(enc["input_ids"]), labels)

    # -- planning --------------------------------------------------------------------------
    def exchange_lengths(self, turns: list[_Turn]) -> tuple[int, list[int], Sample]:
        """Token length of the system part and of each raw (user, assistant) exchange, and the
        whole dialogue as one sample (used as is when it fits one window)."""
        block = [(t.role, self._target_text(t)) for t in turns]
        text, targets, spans = self.render_window([], block)
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        starts = [s for s, _e in enc["offset_mapping"]]
        bounds = [spans[0][0]] + [spans[i + 1][1] for i in range(0, len(spans), 2)]
        counts = [
            sum(1 for s in starts if lo <= s < hi)
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        system_len = sum(1 for s in starts if s < bounds[0])
        return system_len, counts, self.tokenize(text, targets, enc)

    def _target_text(self, turn: _Turn) -> str:
        if turn.role == "assistant" and self.cfg.strategy_conditioning == "prefix":
            from dialogue.prompts import format_strategy_prefix

            return format_strategy_prefix(turn.strategy, turn.text)
        return turn.text

    def plan_blocks(self, system_len: int, lengths: list[int], stats: DataStats) -> list[list[int]]:
        """Group exchange indices into blocks that fit max_seq_len.

        A block that does not start the dialogue keeps `history_tokens` free for context; an
        exchange too long to share the window with history still gets a window of its own.
        """
        room = self.cfg.max_seq_len - system_len
        blocks: list[list[int]] = []
        current: list[int] = []
        used = 0
        for i, n in enumerate(lengths):
            n += PLAN_SLACK_TOKENS
            stats.longest_exchange_tokens = max(stats.longest_exchange_tokens, n)
            if n > room:
                stats.skipped_long_exchanges += 1
                if current:
                    blocks.append(current)
                current, used = [], 0
                continue
            if current:
                cap = room - (self.cfg.history_tokens if current[0] > 0 else 0)
                if used + n <= cap:
                    current.append(i)
                    used += n
                    continue
                blocks.append(current)
            current, used = [i], n
        if current:
            blocks.append(current)
        return blocks

    # -- building --------------------------------------------------------------------------
    def build(self, dialogues: Sequence[Dialogue], stats: DataStats) -> list[Sample]:
        """All samples of these dialogues, in dialogue order (deterministic)."""
        samples: list[Sample] = []
        for dialogue in dialogues:
            turns = conversation_turns(dialogue, stats)
            if len(turns) < 2:
                continue
            stats.dialogues += 1
            samples += self.dialogue_samples(turns, stats)
        stats.samples += len(samples)
        stats.tokens += sum(len(s.input_ids) for s in samples)
        stats.target_tokens += sum(s.num_targets for s in samples)
        return samples

    def dialogue_samples(self, turns: list[_Turn], stats: DataStats) -> list[Sample]:
        """One dialogue's windows (raw or representation-compressed history)."""
        system_len, lengths, whole = self.exchange_lengths(turns)
        stats.system_prompt_tokens = system_len
        blocks = self.plan_blocks(system_len, lengths, stats)
        if blocks == [list(range(len(lengths)))] and len(whole.input_ids) <= self.cfg.max_seq_len:
            stats.target_turns += len(lengths)
            return [whole]  # the whole dialogue is one window: already tokenised
        samples = []
        for block in blocks:
            est = system_len + sum(lengths[i] for i in block)
            sample = self._build_window(turns, block, est, stats)
            if sample is not None:
                samples.append(sample)
        return samples

    def _build_window(
        self, turns: list[_Turn], block: list[int], bare_len: int, stats: DataStats
    ) -> Sample | None:
        block_turns = [
            (t.role, self._target_text(t)) for i in block for t in (turns[2 * i], turns[2 * i + 1])
        ]
        history = turns[: 2 * block[0]]
        context = self._fit_context(self._represent([(t.role, t.text) for t in history]))

        def fits(sample: Sample, context: list[tuple[str, str]]) -> bool:
            extra = len(sample.input_ids) - bare_len - PLAN_SLACK_TOKENS * len(block)
            return len(sample.input_ids) <= self.cfg.max_seq_len and (
                extra <= self.cfg.history_tokens or not context
            )

        return self.shrink_to_fit(context, block_turns, len(block), stats, fits)

    def shrink_to_fit(
        self,
        context: list[tuple[str, str]],
        block_turns: list[tuple[str, str]],
        n_exchanges: int,
        stats: DataStats,
        fits: Callable[[Sample, list[tuple[str, str]]], bool],
    ) -> Sample | None:
        """The window of `block_turns` after `context`, dropping the oldest exchange of context
        until `fits`; None (counted as skipped) when even no context does not fit."""
        while True:
            text, targets, _spans = self.render_window(context, block_turns)
            sample = self.tokenize(text, targets)
            if fits(sample, context):
                break
            if not context:
                stats.skipped_long_exchanges += n_exchanges
                return None
            context = context[2:]
        stats.context_turns += len(context)
        stats.target_turns += len(targets)
        return sample

    def _fit_context(self, context: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The newest whole exchanges of context whose estimated size fits history_tokens."""
        if not context:
            return context
        counts = [
            len(ids) + TURN_OVERHEAD_TOKENS
            for ids in self.tok([text for _role, text in context], add_special_tokens=False)[
                "input_ids"
            ]
        ]
        used, start = 0, len(context)
        for i in range(len(context) - 2, -1, -2):
            used += counts[i] + counts[i + 1]
            if used > self.cfg.history_tokens:
                break
            start = i
        return context[start:]

    def _represent(self, history: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Earlier turns as the bot serves them: `represent_history`, oldest first."""
        rep = self.cfg.context_representation
        # Never much more context than could fit: a cheap cap (~4 chars a token) before the
        # exact fit, which drops whole exchanges from the oldest end.
        budget = 2 * self.cfg.history_tokens
        kept: list[tuple[str, str]] = []
        for role, text in reversed(history):
            budget -= len(text) // 4 + 4
            if budget < 0:
                break
            kept.append((role, text))
        kept.reverse()
        if kept and kept[0][0] == "assistant":
            kept = kept[1:]
        if rep == "raw" or not kept:
            return kept
        from dialogue.context import represent_history

        texts = represent_history(
            [text for _role, text in kept], rep, raw_recent=self.cfg.raw_recent
        )
        return [(role, text) for (role, _), text in zip(kept, texts, strict=True)]


def warm_representation_cache(dialogues: Sequence[Dialogue], representation: str) -> None:
    """Represent every turn once in one batched call (spaCy's nlp.pipe), filling the cache."""
    if representation == "raw":
        return
    from dialogue.context import represent

    rep = "keypos" if representation == "hybrid" else representation
    texts: list[str] = []
    for dialogue in dialogues:
        texts.extend(t.text for t in conversation_turns(dialogue))
    represent(texts, rep)  # type: ignore[arg-type]


def check_strategy_labels(dialogues: Sequence[Dialogue], spec: str, cfg: TrainConfig) -> None:
    """A strategy-conditioned run needs strategy labels: refuse data that has none."""
    if cfg.strategy_conditioning == "none":
        return
    replies = [t for d in dialogues for t in d.turns if t.role == "assistant" and t.text.strip()]
    if replies and not any(t.strategy for t in replies):
        raise DataError(
            f"strategy_conditioning = {cfg.strategy_conditioning!r} but dataset {spec!r} has "
            f"no strategy labels on any of its {len(replies)} supporter turns; use "
            "strategy_conditioning = 'none' or a labelled data set (ESConv, ExTES)"
        )
