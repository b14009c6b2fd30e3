"""A transformers backend for what llama.cpp cannot run (peft adaption prompts), usable for any
training run: the same chat messages, the same sampling options, the run's own tokenizer and
chat template.

`TransformersBackend` has the bot backends' interface (`name`, `n_ctx`, `parallel`,
`generate(messages, options)`, `count_tokens`), so `evaluation.generate` builds prompts with the
bot's context builder exactly as for llama.cpp. `TransformersScorer` has `evaluation.ppl`'s
scoring interface, for perplexity from the same weights.

It loads a training run directory (`runs/<name>/`, `manifest.json` stage "train"): the base in
float32 from `base_model.hf_dir`, then the peft adapter (`artifacts.adapter_dir`) or, for a full
fine-tune, the whole model (`artifacts.model_dir`). Sampling is transformers' (temperature,
top-p, top-k, seeded per reply), not llama.cpp's: the same options, another sampler; the base
weights are the dequantized copy of the Q4_1 GGUF llama.cpp runs. `bench`/results measure that
gap on the base model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BACKEND_NAME = "transformers"


@dataclass(frozen=True)
class TrainedRun:
    """What a training run's manifest says about its weights."""

    run_dir: Path
    method: str
    base_hf_dir: Path
    adapter_dir: Path | None
    model_dir: Path | None
    tokenizer_dir: Path
    chat_template: str | None


def read_trained_run(run_dir: str | Path) -> TrainedRun:
    """Parse a training run directory; ValueError naming what is missing."""
    run = Path(run_dir)
    path = run / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{run}: not a finished training run (no readable manifest.json: {exc}); pass a "
            "runs/<name> directory written by `solace train`"
        ) from exc
    if manifest.get("stage") != "train":
        raise ValueError(f"{path}: stage is {manifest.get('stage')!r}, expected 'train'")
    artifacts = manifest.get("artifacts") or {}
    base = Path(str((manifest.get("base_model") or {}).get("hf_dir") or ""))
    adapter = run / artifacts["adapter_dir"] if artifacts.get("adapter_dir") else None
    model = run / artifacts["model_dir"] if artifacts.get("model_dir") else None
    problems = []
    if model is None and not (base / "config.json").is_file():
        problems.append(f"base_model.hf_dir {str(base)!r} is not a Hugging Face model directory")
    if adapter is None and model is None:
        problems.append("artifacts name neither adapter_dir nor model_dir")
    for label, where in (("adapter", adapter), ("model", model)):
        if where is not None and not where.is_dir():
            problems.append(f"{label} directory {where} does not exist")
    if problems:
        raise ValueError(f"{path}: cannot load this run:\n  " + "\n  ".join(problems))
    tokenizer = run / str(artifacts.get("tokenizer_dir") or "tokenizer")
    return TrainedRun(run, str(manifest.get("method") or "lora"), base, adapter, model,
                      tokenizer if tokenizer.is_dir() else (model or base),
                      manifest.get("chat_template"))  # fmt: skip


def load_trained(run: TrainedRun, threads: int | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) in float32, eval mode, on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(run.tokenizer_dir), local_files_only=True)
    if run.chat_template:
        tokenizer.chat_template = run.chat_template
    source = run.model_dir or run.base_hf_dir
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(source), dtype=torch.float32, local_files_only=True
    )
    if run.model_dir is None and run.adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(run.adapter_dir), is_trainable=False)
    model.eval()
    return model, tokenizer


class TransformersBackend:
    """A trained run served by transformers (`generate` yields the whole reply at once)."""

    name = BACKEND_NAME
    parallel = False

    def __init__(self, run_dir: str | Path, n_ctx: int = 2048, threads: int | None = None) -> None:
        self.run = read_trained_run(run_dir)
        self.model, self.tokenizer = load_trained(self.run, threads)
        self.n_ctx = n_ctx
        self.model_path = str(self.run.run_dir)
        self.lora_path = str(self.run.adapter_dir) if self.run.adapter_dir else None
        end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        ids = {self.tokenizer.eos_token_id} | (
            {end} if isinstance(end, int) and end >= 0 else set()
        )
        self.stop_ids = sorted(i for i in ids if i is not None)

    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """The chat prompt's token ids (generation prompt included), as the template renders."""
        text = self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, messages: Sequence[dict[str, str]], options: Any) -> Iterator[str]:
        """Sample one reply with the options' temperature / top-p / top-k / seed."""
        import torch

        from bot.errors import BackendError

        try:
            prompt = torch.tensor([self.prompt_ids(messages)])
            if options.seed is not None:
                torch.manual_seed(options.seed)
            sample = options.temperature > 0
            with torch.no_grad():
                out = self.model.generate(
                    input_ids=prompt, attention_mask=torch.ones_like(prompt),
                    max_new_tokens=options.max_new_tokens, do_sample=sample,
                    temperature=options.temperature if sample else None,
                    top_p=options.top_p if sample else None,
                    top_k=options.top_k if sample else None,
                    eos_token_id=self.stop_ids, pad_token_id=self.stop_ids[0],
                )  # fmt: skip
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"transformers generation failed: {type(exc).__name__}") from exc
        text = self.tokenizer.decode(out[0, prompt.shape[1] :], skip_special_tokens=True)
        for stop in options.stop or ():
            text = text.split(stop, 1)[0]
        yield text

    def count_tokens(self, text: str) -> int:
        """Tokens under the run's tokenizer (no special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


class TransformersScorer:
    """`evaluation.ppl`'s scoring interface on a trained run, through transformers."""

    implementation = "exp(sum NLL / sum tokens) over all reference tokens; transformers logits"

    def __init__(self, run_dir: str | Path, n_ctx: int = 2048, threads: int | None = None) -> None:
        self.backend = TransformersBackend(run_dir, n_ctx=n_ctx, threads=threads)
        self.n_ctx = n_ctx
        self.model_path = self.backend.model_path
        self.lora_path = self.backend.lora_path

    def prompt_tokens(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """The chat prompt's tokens, generation prompt included."""
        return self.backend.prompt_ids(messages)

    def text_tokens(self, text: str) -> list[int]:
        """A reply's tokens."""
        return list(self.backend.tokenizer(text, add_special_tokens=False)["input_ids"])

    def continuation_nll(self, prefix: Sequence[int], continuation: Sequence[int]) -> list[float]:
        """Negative log-probability of each continuation token given everything before it."""
        import torch

        if not prefix:
            raise ValueError("prefix must hold at least one token")
        ids = torch.tensor([list(prefix) + list(continuation)])
        with torch.no_grad():
            logits = self.backend.model(input_ids=ids).logits[0].float()
        start = len(prefix) - 1
        logp = torch.log_softmax(logits[start : start + len(continuation)], dim=-1)
        picked = logp[torch.arange(len(continuation)), torch.tensor(list(continuation))]
        return [float(-x) for x in picked]
