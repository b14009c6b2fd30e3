"""Served windows (`windows = "served"`): every target sees its history exactly as the bot's
context builder would show it, so a model is trained on the prompts it is served.

The bot (`dialogue.window.build_context`, from its stored turns) sends, for a reply after `n`
history turns, the turns older than `raw_window_start(n)` in their compressed form and the newer ones raw, and the
current user message raw. With `compress_in_blocks` that boundary moves `2 * raw_recent` turns
at a time, so consecutive replies share it: such replies share one window (multi-target
packing stays exact), whose *context* is every earlier turn with the same boundary applied.
A change of boundary starts a new window. `raw` history never moves the boundary (whole
dialogues stay one window), `keypos`/`nostopwords` move it every reply (one window per reply).

The boundary is `dialogue.window.raw_window_start`, the one function the bot uses, and a test
checks every window against `dialogue.window.build_context`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dialogue.window import raw_window_start
from trainer.data import PLAN_SLACK_TOKENS, DataStats, Sample, WindowBuilder, _Turn

if TYPE_CHECKING:
    from dialogue.types import Dialogue


class ServedWindowBuilder(WindowBuilder):
    """`WindowBuilder` whose windows reproduce the served prompt of every target."""

    def compressed_before(self, n_history: int) -> int:
        """How many of the oldest `n_history` turns the bot sends compressed."""
        rep = self.cfg.context_representation
        if rep == "raw":
            return 0
        if rep != "hybrid":
            return n_history
        return raw_window_start(n_history, self.cfg.raw_recent, self.cfg.compress_in_blocks)

    def groups(self, n_exchanges: int) -> list[list[int]]:
        """Runs of consecutive exchanges whose served histories share one boundary."""
        out: list[list[int]] = []
        last = None
        for e in range(n_exchanges):
            start = self.compressed_before(2 * e)
            if out and start == last:
                out[-1].append(e)
            else:
                out.append([e])
            last = start
        return out

    def dialogue_samples(self, turns: list[_Turn], stats: DataStats) -> list[Sample]:
        """One dialogue's served windows: history as the bot serves it at each turn."""
        system_len, lengths, _whole = self.exchange_lengths(turns)
        stats.system_prompt_tokens = system_len
        samples = []
        for group in self.groups(len(lengths)):
            boundary = self.compressed_before(2 * group[0])
            for block in self.split(group, system_len, lengths, stats):
                sample = self.served_window(turns, block, boundary, stats)
                if sample is not None:
                    samples.append(sample)
        return samples

    def split(
        self, group: list[int], system_len: int, lengths: list[int], stats: DataStats
    ) -> list[list[int]]:
        """Cut a group into blocks that fit max_seq_len, keeping `history_tokens` for context
        in every block that has earlier turns (an exchange too long on its own is skipped)."""
        room = self.cfg.max_seq_len - system_len
        blocks: list[list[int]] = []
        current: list[int] = []
        used = 0
        for e in group:
            n = lengths[e] + PLAN_SLACK_TOKENS
            stats.longest_exchange_tokens = max(stats.longest_exchange_tokens, n)
            if n > room:  # skipped; the block must not run across the gap it leaves
                stats.skipped_long_exchanges += 1
                if current:
                    blocks.append(current)
                current, used = [], 0
                continue
            cap = room - (self.cfg.history_tokens if (current or [e])[0] > 0 else 0)
            if current and used + n > cap:
                blocks.append(current)
                current, used = [], 0
            current.append(e)
            used += n
        if current:
            blocks.append(current)
        return blocks

    def served_window(
        self, turns: list[_Turn], block: list[int], boundary: int, stats: DataStats
    ) -> Sample | None:
        """The window of `block` with every earlier turn as context, compressed before
        `boundary`; the oldest exchanges are dropped until it fits (as the bot drops the oldest
        turns when its budget is full)."""
        block_turns = [
            (t.role, self._target_text(t)) for i in block for t in (turns[2 * i], turns[2 * i + 1])
        ]
        context = self.served_context(turns[: 2 * block[0]], boundary)
        return self.shrink_to_fit(
            context, block_turns, len(block), stats,
            lambda sample, _context: len(sample.input_ids) <= self.cfg.max_seq_len,
        )  # fmt: skip

    def served_context(self, history: list[_Turn], boundary: int) -> list[tuple[str, str]]:
        """Earlier turns as the bot stores and sends them: the assistant's with their strategy
        prefix when the run is strategy-conditioned (as `solace eval generate --strategies`
        stores them), compressed before `boundary`."""
        from dialogue.context import represent

        texts = [t.text if t.role == "user" else self._target_text(t) for t in history]
        rep = self.cfg.context_representation
        form = "keypos" if rep == "hybrid" else rep
        if boundary and form != "raw":
            texts = represent(texts[:boundary], form) + texts[boundary:]  # type: ignore[arg-type]
        return [(t.role, text) for t, text in zip(history, texts, strict=True)]


def warm_served_cache(dialogues: Sequence[Dialogue], builder: ServedWindowBuilder) -> None:
    """Represent every context text once, in one batched call (spaCy's nlp.pipe)."""
    from dialogue.context import represent
    from trainer.data import conversation_turns

    rep = builder.cfg.context_representation
    if rep == "raw":
        return
    texts = [
        t.text if t.role == "user" else builder._target_text(t)
        for d in dialogues
        for t in conversation_turns(d)
    ]
    represent(texts, "keypos" if rep == "hybrid" else rep)  # type: ignore[arg-type]
