"""Perplexity of the reference replies under the model, with the same prompt the bot builds.

For each row, the prompt is the row's `messages` rendered with the GGUF's own chat template
(as llama-cpp-python's chat completion renders it, generation prompt included); the reference
reply's tokens follow it and their log-probabilities come from llama.cpp's logits
(`logits_all=True`). Perplexity is exp(total NLL / total reference tokens) over the corpus — per
token, not the mean of per-utterance perplexities (the bug the ESConv authors document).
The end-of-turn token is not scored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class ScoringModel:
    """A llama.cpp model loaded with all logits kept, plus its chat formatter."""

    def __init__(
        self,
        model_path: str | Path,
        lora_path: str | Path | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
    ) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        for label, path in (("model", model_path), ("LoRA adapter", lora_path)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{label} file {path} does not exist")
        try:
            self.llm = Llama(model_path=str(model_path), lora_path=str(lora_path) if lora_path else None,
                             n_ctx=n_ctx, n_threads=n_threads, logits_all=True, verbose=False)  # fmt: skip
        except Exception as exc:  # llama.cpp reports load failures as ValueError/RuntimeError
            raise RuntimeError(f"could not load {model_path} (lora={lora_path}): {exc}") from exc
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{model_path} has no chat template; perplexity needs one")
        eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
        text = self.llm._model.token_get_text  # the same strings llama-cpp-python gives Jinja
        self.formatter = Jinja2ChatFormatter(
            template=template, eos_token=text(eos_id) if eos_id != -1 else "",
            bos_token=text(bos_id) if bos_id != -1 else "", stop_token_ids=[eos_id],
        )  # fmt: skip
        self.n_ctx = n_ctx
        self.model_path = str(model_path)
        self.lora_path = str(lora_path) if lora_path else None

    def prompt_tokens(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """The chat prompt's tokens as the bot's llama-cpp backend feeds them: the template's
        control tokens, and every message content as plain text (a data set's text that looks
        like `<|im_end|>` stays words, as a person's would)."""
        from bot.backends.prompt_render import render_prompt, tokenize_pieces

        rendered = render_prompt(self.formatter, messages)  # type: ignore[arg-type]
        return tokenize_pieces(rendered, self.llm.tokenize)

    def text_tokens(self, text: str) -> list[int]:
        """A reply's tokens (no BOS, special strings not parsed)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def continuation_nll(self, prefix: Sequence[int], continuation: Sequence[int]) -> list[float]:
        """Negative log-probability of each continuation token given everything before it."""
        if not prefix:
            raise ValueError("prefix must hold at least one token")
        tokens = list(prefix) + list(continuation)
        # Reuse the KV cache (and kept logits) of the longest prefix already evaluated: the next
        # supporter turn's prompt usually extends the previous one.
        held = self.llm.input_ids[: self.llm.n_tokens].tolist()
        common = 0
        for a, b in zip(held, tokens, strict=False):
            if a != b:
                break
            common += 1
        self.llm.n_tokens = min(common, len(tokens) - 1)
        self.llm.eval(tokens[self.llm.n_tokens :])
        start = len(prefix) - 1
        logits = np.asarray(self.llm.scores[start : start + len(continuation)], dtype=np.float64)
        peak = logits.max(axis=1, keepdims=True)
        log_z = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
        picked = logits[np.arange(len(continuation)), np.asarray(continuation)]
        return list(log_z - picked)


def reference_tokens(row: dict[str, Any], model: Any) -> tuple[list[int], int]:
    """The tokens to score and how many leading ones are the strategy prefix (not scored).

    A strategy-conditioned run (`reference_with_strategy`) is trained to write "[Strategy] "
    first: its reply tokens are scored after the reference's own prefix (teacher-forced), so
    every row scores the same reply tokens. The prefix is found by tokenizing "[Strategy]"
    alone (the space after it starts the reply's first token).
    """
    text = row.get("reference_with_strategy")
    if not text or text == row["reference"]:
        return model.text_tokens(row["reference"]), 0
    tokens = model.text_tokens(text)
    head = model.text_tokens(text[: text.index("]") + 1])
    if tokens[: len(head)] != head:  # the tokenizer merged across the boundary: score it all
        return tokens, 0
    return tokens, len(head)


def corpus_perplexity(rows: Sequence[dict[str, Any]], model: Any) -> dict[str, Any]:
    """Per-token corpus perplexity of the references (and the per-utterance mean, for contrast).

    `model` is a `ScoringModel` (llama.cpp) or anything with its interface
    (`evaluation.hf_backend.TransformersScorer`).
    """
    total_nll = 0.0
    total_tokens = 0
    per_utterance: list[float] = []
    truncated = skipped = 0
    prefixed = 0
    # dialogue order: each prompt then extends the previous one and its KV cache is reused
    for row in sorted(rows, key=lambda r: (str(r.get("dialogue_id")), r.get("turn_index", 0))):
        prompt = model.prompt_tokens(row["messages"])
        ref, head = reference_tokens(row, model)
        if head:
            prompt, ref = prompt + ref[:head], ref[head:]
            prefixed += 1
        room = model.n_ctx - len(prompt)
        if room <= 0 or not ref:
            skipped += 1
            continue
        if len(ref) > room:
            ref = ref[:room]
            truncated += 1
        nll = model.continuation_nll(prompt, ref)
        total_nll += sum(nll)
        total_tokens += len(nll)
        per_utterance.append(math.exp(sum(nll) / len(nll)))
    if total_tokens == 0:
        raise ValueError("no reference tokens could be scored")
    implementation = getattr(
        model,
        "implementation",
        "exp(sum NLL / sum tokens) over all reference tokens; llama.cpp logits",
    )
    if prefixed:
        implementation += "; reply tokens after the reference's own [Strategy] prefix"
    return {
        "value": math.exp(total_nll / total_tokens),
        "label": "PPL",
        "implementation": implementation,
        "model": model.model_path,
        "lora": model.lora_path,
        "tokenizer": "the GGUF's own tokenizer; prompt = row messages through its chat template",
        "reference_tokens": total_tokens,
        "rows_scored": len(per_utterance),
        "rows_skipped": skipped,
        "rows_given_reference_strategy": prefixed,
        "references_truncated_to_context": truncated,
        "mean_of_per_utterance_ppl_NOT_the_metric": float(np.mean(per_utterance)),
    }
