"""Parity checks: does the GGUF behave like the HF model that was trained?

Four measurements, all on held-out dialogues rendered with the run's chat template:
- tokenization: HF token ids == llama.cpp token ids, for every utterance, every rendered chat
  and a few hand-written hard strings (any difference fails the export);
- perplexity of the assistant tokens, HF vs each GGUF (the GGUF is fed the HF token ids, so the
  comparison isolates the weights); a relative increase above the configured bound fails;
- greedy continuation agreement (shared-prefix fraction) on a few prompts;
- size, load time and generation tokens/s of each file.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from exporter.config import ExportConfig

logger = logging.getLogger(__name__)

# Written by us, not user data: whitespace runs, digits, accents, emoji, CJK, contractions.
HARD_STRINGS = (
    "I can't sleep.  I've tried   everything\n\n\tand nothing works...",
    "It's 3:47 a.m. and I've been awake since 11pm — 1234567 thoughts.",
    "Café, naïve, résumé; Zürich → São Paulo. 我很难过。 Мне грустно. 😢🙏🏽",
    "  leading spaces and trailing spaces   ",
    "\"Quotes\" 'single' ``backticks`` ... !!! ??? --- ===",
)

Messages = list[dict[str, str]]


@dataclass
class EvalSet:
    """Token ids and assistant-token masks of held-out chats, plus texts and greedy prompts."""

    chats: list[list[int]]
    masks: list[list[bool]]
    prompts: list[list[int]]
    texts: list[str]


@dataclass
class ModelRow:
    """One row of the parity table."""

    name: str
    kind: str
    path: str | None = None
    size_bytes: int = 0
    load_s: float = 0.0
    tokens_per_s: float | None = None
    ppl: float = float("nan")
    ppl_increase: float | None = None
    greedy_agreement: float | None = None
    tokenization_mismatches: int | None = None
    bound: float | None = None
    gated: bool = False
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no gated check failed."""
        return not self.failures


@dataclass
class ParityReport:
    """All rows plus the reference; `failures` lists every gated check that failed."""

    rows: list[ModelRow]
    eval_chats: int
    eval_tokens: int
    tokenization_texts: int

    @property
    def failures(self) -> list[str]:
        """Every failed gated check, prefixed by the model row's name."""
        return [f"{r.name}: {f}" for r in self.rows for f in r.failures]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN becomes None)."""
        rows = []
        for row in self.rows:
            item = asdict(row)
            item["passed"] = row.passed
            item["ppl"] = None if math.isnan(row.ppl) else row.ppl
            rows.append(item)
        return {
            "rows": rows,
            "eval_chats": self.eval_chats,
            "eval_tokens": self.eval_tokens,
            "tokenization_texts": self.tokenization_texts,
            "passed": not self.failures,
            "failures": self.failures,
        }


def dialogue_messages(dialogue: Any, system_prompt: str | None, strategy_prefix: bool) -> Messages:
    """A `dialogue.types.Dialogue` as chat messages (raw turns, as the trainer's target block)."""
    from dialogue.prompts import build_messages, format_strategy_prefix

    history = []
    for turn in dialogue.turns:
        text = turn.text
        if turn.role == "assistant" and strategy_prefix:
            text = format_strategy_prefix(turn.strategy, text)
        history.append((turn.role, text))
    return build_messages(history, None, system_prompt)


def _render(tokenizer: Any, messages: Messages, generation_prompt: bool = False) -> str:
    return str(
        tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
    )


def encode_chat(
    tokenizer: Any, messages: Messages, max_tokens: int
) -> tuple[list[int], list[bool], str]:
    """Token ids of the longest whole-turn prefix within `max_tokens`, with a mask that is
    True on assistant tokens (content and end-of-turn), and the rendered text."""
    if not messages or messages[0]["role"] != "system":
        # An opening supporter turn has no prompt to render before it: it cannot be scored.
        while messages and messages[0]["role"] == "assistant":
            messages = messages[1:]
    start = 1 if messages and messages[0]["role"] == "system" else 0
    spans: list[tuple[int, int]] = []
    text = _render(tokenizer, messages[:start]) if start else ""
    best: tuple[list[int], list[bool], str] = ([], [], "")
    for i in range(start, len(messages)):
        if messages[i]["role"] == "assistant":
            before = _render(tokenizer, messages[:i], generation_prompt=True)
            after = _render(tokenizer, messages[: i + 1])
            spans.append((len(before), len(after)))
            text = after
        else:
            text = _render(tokenizer, messages[: i + 1])
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        if len(ids) > max_tokens:
            break
        mask = [any(a <= s < b for a, b in spans) for s, _ in enc["offset_mapping"]]
        best = (ids, mask, text)
    return best


def build_eval_set(
    tokenizer: Any,
    dialogues: Sequence[Any],
    cfg: ExportConfig,
    system_prompt: str | None,
    strategy_prefix: bool = False,
) -> EvalSet:
    """Render held-out dialogues into the chats, masks, prompts and texts the checks use."""
    chats: list[list[int]] = []
    masks: list[list[bool]] = []
    prompts: list[list[int]] = []
    rendered: list[str] = []
    utterances: list[str] = []
    for dialogue in dialogues[: cfg.eval_dialogues]:
        messages = dialogue_messages(dialogue, system_prompt, strategy_prefix)
        ids, mask, text = encode_chat(tokenizer, messages, cfg.eval_max_tokens)
        if sum(mask) == 0:
            continue
        chats.append(ids)
        masks.append(mask)
        rendered.append(text)
        utterances += [m["content"] for m in messages if m["role"] != "system"]
        if len(prompts) < cfg.greedy_prompts:
            users = [i for i, m in enumerate(messages) if m["role"] == "user"]
            if users:
                prompt = _render(tokenizer, messages[: users[0] + 1], generation_prompt=True)
                prompts.append(list(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
    texts = [*HARD_STRINGS, *utterances[: cfg.tokenization_texts], *rendered]
    return EvalSet(chats=chats, masks=masks, prompts=prompts, texts=texts)


def _nll_from_logits(logits: Any, ids: Sequence[int], mask: Sequence[bool]) -> tuple[float, int]:
    """Summed negative log-likelihood of masked target tokens, and how many there were."""
    import numpy as np

    rows = np.nonzero(np.asarray(mask[1:], dtype=bool))[0]  # position t-1 predicts token t
    if rows.size == 0:
        return 0.0, 0
    arr = np.asarray(logits, dtype=np.float32)[rows]  # only the scored rows: 40% of the work
    peak = arr.max(axis=-1, keepdims=True)
    logz = peak[:, 0].astype(np.float64) + np.log(np.exp(arr - peak).sum(axis=-1, dtype=np.float64))
    picked = arr[np.arange(rows.size), np.asarray(ids)[rows + 1]].astype(np.float64)
    return float((logz - picked).sum()), int(rows.size)


def hf_perplexity(model: Any, eval_set: EvalSet) -> float:
    """Perplexity of the HF model on the assistant tokens of the eval chats."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for ids, mask in zip(eval_set.chats, eval_set.masks, strict=True):
            logits = model(torch.tensor([ids])).logits[0].float().numpy()
            nll, n = _nll_from_logits(logits, ids, mask)
            total, count = total + nll, count + n
    return math.exp(total / max(count, 1))


def gguf_perplexity(llm: Any, eval_set: EvalSet) -> float:
    """Perplexity of a llama.cpp model (built with logits_all=True) on the same token ids."""
    total, count = 0.0, 0
    for ids, mask in zip(eval_set.chats, eval_set.masks, strict=True):
        llm.reset()
        llm.eval(ids)
        nll, n = _nll_from_logits(llm.scores[: len(ids)], ids, mask)
        total, count = total + nll, count + n
    return math.exp(total / max(count, 1))


def hf_greedy(model: Any, prompt: list[int], n: int, eos: set[int]) -> list[int]:
    """Greedy continuation of `prompt` with the HF model (stops at an end token)."""
    import torch

    out: list[int] = []
    with torch.inference_mode():
        past, inputs = None, torch.tensor([prompt])
        for _ in range(n):
            res = model(inputs, past_key_values=past, use_cache=True)
            past = res.past_key_values
            nxt = int(res.logits[0, -1].argmax())
            out.append(nxt)
            if nxt in eos:
                break
            inputs = torch.tensor([[nxt]])
    return out


def gguf_greedy(llm: Any, prompt: list[int], n: int, eos: set[int]) -> list[int]:
    """Greedy continuation of `prompt` with llama.cpp (argmax of the raw logits)."""
    import numpy as np

    llm.reset()
    llm.eval(prompt)
    out: list[int] = []
    for _ in range(n):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(nxt)
        if nxt in eos:
            break
        llm.eval([nxt])
    return out


def agreement(a: Sequence[int], b: Sequence[int]) -> float:
    """Shared-prefix length over the longer sequence (1.0 when identical)."""
    if list(a) == list(b):
        return 1.0
    shared = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        shared += 1
    return shared / max(len(a), len(b), 1)


def tokenization_mismatches(tokenizer: Any, llm: Any, texts: Sequence[str]) -> list[int]:
    """Indices of texts whose HF and llama.cpp token ids differ (special tokens parsed)."""
    bad = []
    for i, text in enumerate(texts):
        hf_ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        ll_ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if hf_ids != list(ll_ids):
            bad.append(i)
    return bad


def load_llama(path: Path, cfg: ExportConfig, lora: Path | None = None, **kw: Any) -> Any:
    """A llama_cpp.Llama for verification (all logits kept, quiet)."""
    import llama_cpp

    return llama_cpp.Llama(
        model_path=str(path),
        lora_path=str(lora) if lora else None,
        n_ctx=cfg.n_ctx,
        n_threads=cfg.n_threads,
        n_threads_batch=cfg.n_threads,
        logits_all=True,
        verbose=False,
        seed=0,
        **kw,
    )


def gguf_tokens_per_s(llm: Any, prompt: list[int], n: int) -> float:
    """Generation speed: greedy tokens per second after the prompt (no end-token stop)."""
    import numpy as np

    llm.reset()
    llm.eval(prompt)
    start = time.perf_counter()
    for _ in range(n):
        llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
    return n / max(time.perf_counter() - start, 1e-9)


def hf_tokens_per_s(model: Any, prompt: list[int], n: int) -> float:
    """HF generation speed with a KV cache (greedy, no end-token stop)."""
    start = time.perf_counter()
    hf_greedy(model, prompt, n, eos=set())
    return n / max(time.perf_counter() - start, 1e-9)
