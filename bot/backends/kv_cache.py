"""Per-conversation KV-cache states for the single local llama.cpp context.

llama-cpp-python reuses the evaluated prefix of the *previous* prompt only. When several people
talk at once, each conversation's prompt follows someone else's, so the shared prefix would be
re-evaluated every turn. `KVStateCache` keeps the KV cells of sequence 0 after each reply, keyed
by the tokens they hold (an LRU within a byte budget), and restores the best one before the next
prompt when it covers more of the prompt than what is loaded now.

`llama_cpp.LlamaRAMCache` does the same job but copies the full logits buffer with every state
(`n_batch × n_vocab` floats: ~100 MB for SmolLM2's 49k vocabulary) and leaves that out of its
size accounting, so it is not used.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

SEQ_ID = 0
# Restoring costs a copy of the state; below this many extra reusable tokens it is not worth it.
MIN_GAIN_TOKENS = 16


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class KVStateCache:
    """An LRU of saved KV states of a `llama_cpp.Llama`, bounded by `capacity_bytes`."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._states: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        """Bytes held."""
        return sum(len(state) for state in self._states.values())

    def __len__(self) -> int:
        return len(self._states)

    def save(self, llm: Any) -> None:
        """Remember the KV state for the tokens `llm` has evaluated now."""
        import llama_cpp

        n_tokens = int(llm.n_tokens)
        if n_tokens == 0:
            return
        ctx = llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, SEQ_ID)
        if size <= 0 or size > self.capacity_bytes:
            return
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, SEQ_ID)
        key = tuple(int(t) for t in llm.input_ids[:n_tokens])
        # A state whose tokens are a prefix of the new one is superseded by it.
        for old in [k for k in self._states if len(k) <= len(key) and key[: len(k)] == k]:
            del self._states[old]
        self._states[key] = bytes(buffer)[:written]
        while self._states and self.size_bytes > self.capacity_bytes:
            self._states.popitem(last=False)

    def restore_best(self, llm: Any, prompt: Sequence[int]) -> int:
        """Load the saved state sharing the longest prefix with `prompt`, if it beats what is
        loaded now by at least MIN_GAIN_TOKENS; returns the reusable prefix length."""
        import llama_cpp

        current = common_prefix(llm.input_ids[: llm.n_tokens].tolist(), prompt)
        best_key, best = None, current
        for key in self._states:
            shared = common_prefix(key, prompt)
            if shared > best:
                best_key, best = key, shared
        if best_key is None or best - current < MIN_GAIN_TOKENS:
            self.misses += best_key is None
            return current
        state = self._states[best_key]
        self._states.move_to_end(best_key)
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buffer, len(state), SEQ_ID) == 0:
            logger.warning("could not restore a saved KV state; evaluating the prompt instead")
            llm.reset()
            return 0
        llm.input_ids[: len(best_key)] = best_key
        llm.n_tokens = len(best_key)
        if hasattr(llm, "_requires_eval"):
            llm._requires_eval = True  # logits are stale: the suffix decode refreshes them
        self.hits += 1
        return best
