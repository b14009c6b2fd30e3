"""The `llama-server` backend: replies from a supervised llama-server child
(bot/backends/llama_server_process.py).

Requests go through the OpenAI-compatible backend (streaming) to the current server; its URL and
key change when it restarts. A request that fails before any text was streamed because the server
died is sent again once the server is back (within `restart_wait_seconds`); one cut off mid-reply
raises BackendError, and the engine tells the person kindly (their turn is already stored).

Prefix reuse, the server-side twin of the embedded backend's KV state cache: every request has
`cache_prompt`, and with `pin_slots` a conversation goes back to the slot that holds its prefix
whenever that slot is free (`id_slot`); other conversations' prefixes wait in the server's RAM
prompt cache (`--cache-ram`, `model.cache_mb`). The timings the server returns with each reply
(`cache_n` reused, `prompt_n` evaluated) are summed in `prompt_tokens_reused` / `_evaluated`.

Tokens are counted with the GGUF's own tokenizer, loaded vocabulary-only in this process (a few
MB), on the text as sent (control-token strings neutralised by the openai backend), so the context
builder budgets exactly for one slot's context (`model.n_ctx`), not the total.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.backends.base import GenOptions
from bot.backends.llama_cpp import LlamaCppBackend
from bot.backends.llama_server_command import (
    binary_version,
    cache_link,
    find_binary,
    server_command,
)
from bot.backends.llama_server_process import LlamaServerProcess
from bot.backends.openai import APPROX_BYTES_PER_TOKEN, OpenAIBackend
from bot.backends.prompt_render import neutralise_control_tokens
from bot.errors import BackendError, ConfigError
from dialogue.prompts import Message

if TYPE_CHECKING:
    from bot.backends.base import Backend
    from bot.config import Settings

logger = logging.getLogger(__name__)

SLOT_ANY = -1
# Messages that identify a conversation for slot affinity: the system prompt and the first turn.
AFFINITY_MESSAGES = 2


def conversation_key(messages: Sequence[Message]) -> str:
    """An in-memory key for a conversation's prompt prefix (a hash; never logged or stored)."""
    digest = hashlib.blake2b(digest_size=16)
    for message in messages[:AFFINITY_MESSAGES]:
        digest.update(message["role"].encode() + b"\0" + message["content"].encode() + b"\0")
    return digest.hexdigest()


class SlotAffinity:
    """Which server slot holds which conversation's prefix, and which slots are busy.

    `acquire` gives a conversation its own slot back when free, else the free slot used least
    recently; with none free it waits, so the bookkeeping matches the server exactly (every
    request to this server goes through here).
    """

    def __init__(self, slots: int) -> None:
        self._free = threading.Condition()
        self._busy: set[int] = set()
        self._holder: dict[int, str] = {}
        self._slot_of: dict[str, int] = {}
        self._used_at = dict.fromkeys(range(slots), 0)
        self._tick = 0

    def acquire(self, key: str) -> int:
        """A slot for conversation `key` (blocks while all are busy)."""
        with self._free:
            while len(self._busy) == len(self._used_at):
                self._free.wait()
            slot = self._slot_of.get(key)
            if slot is None or slot in self._busy or self._holder.get(slot) != key:
                free = [s for s in self._used_at if s not in self._busy]
                slot = min(free, key=self._used_at.__getitem__)
                old = self._holder.get(slot)
                if old is not None:
                    self._slot_of.pop(old, None)
                self._holder[slot], self._slot_of[key] = key, slot
            self._busy.add(slot)
            self._tick += 1
            self._used_at[slot] = self._tick
            return slot

    def take_if_unused(self, slot: int) -> bool:
        """Take `slot` when it is free and holds no conversation (for warming it up)."""
        with self._free:
            if slot in self._busy or slot in self._holder:
                return False
            self._busy.add(slot)
            return True

    def release(self, slot: int) -> None:
        """The request on `slot` has finished."""
        with self._free:
            self._busy.discard(slot)
            self._free.notify()

    def forget(self) -> None:
        """A new server process holds no prefixes."""
        with self._free:
            self._holder.clear()
            self._slot_of.clear()


class LlamaServerBackend:
    """Backend over a supervised llama-server child; parallel (the server batches requests)."""

    name = "llama-server"
    parallel = True

    def __init__(
        self,
        process: LlamaServerProcess,
        *,
        n_ctx: int,
        tokenizer: Any = None,
        request_timeout: float = 60.0,
        restart_wait: float = 15.0,
        pin_slots: bool = True,
    ) -> None:
        self.process = process
        self.n_ctx = n_ctx
        self._tokenizer = tokenizer
        self._timeout = request_timeout
        self._restart_wait = restart_wait
        self._slots = SlotAffinity(process.command.parallel) if pin_slots else None
        self._clients: tuple[int, OpenAIBackend] | None = None
        self._lock = threading.Lock()
        self._prefix: list[Message] = []
        self.prompt_tokens_reused = 0
        self.prompt_tokens_evaluated = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Backend:
        """Start the child and wait until it serves; or the embedded backend if no binary."""
        ls, m = settings.llama_server, settings.model
        binary, version = _usable_binary(ls.binary)
        if binary is None:
            if ls.missing_binary == "refuse":
                raise ConfigError(version + " (llama_server.missing_binary = refuse)")
            logger.warning("%s; answering with the embedded model (llama-cpp) instead", version)
            return LlamaCppBackend.from_settings(settings)
        command = server_command(settings, binary)
        tokenizer = _load_tokenizer(command.model)
        n_ctx = _slot_context(m.n_ctx, tokenizer)
        if n_ctx != command.ctx_per_slot:
            command = dataclasses.replace(command, ctx_per_slot=n_ctx)
        process = LlamaServerProcess(
            command,
            port=ls.port,
            startup_timeout=ls.startup_timeout_seconds,
            backoff=ls.restart_backoff_seconds,
            backoff_max=ls.restart_backoff_max_seconds,
            watchdog_interval=ls.watchdog_interval_seconds,
            watchdog_timeout=ls.watchdog_timeout_seconds,
        )
        logger.info("llama-server backend: %s, %s", binary, version)
        process.start()
        return cls(
            process,
            n_ctx=n_ctx,
            tokenizer=tokenizer,
            request_timeout=ls.request_timeout_seconds,
            restart_wait=ls.restart_wait_seconds,
            pin_slots=ls.pin_slots,
        )

    def generate(self, messages: Sequence[Message], options: GenOptions) -> Iterator[str]:
        """Stream the reply; one transparent retry when the server died before any text."""
        failed = 0  # the generation whose server went away under the first attempt
        for attempt in (1, 2):
            endpoint = self.process.wait_ready(self._restart_wait, after=failed)
            if endpoint is None:
                raise BackendError("llama-server is not running (restarting); try again soon")
            client = self._client(endpoint.generation, endpoint.base_url, endpoint.api_key)
            streamed = False
            try:
                for chunk in self._stream(client, messages, options):
                    streamed = True
                    yield chunk
                return
            except BackendError:
                if streamed or attempt == 2 or self.process.is_current(endpoint.generation):
                    raise
                failed = endpoint.generation
                logger.warning("llama-server went away before replying; sending the request again")

    def warm_up(self, prefix: Sequence[Message]) -> None:
        """Evaluate `prefix` (the system prompt) into every slot now, and after each restart,
        so a new conversation starts with it cached whichever slot it gets: llama-server
        reuses a slot's longest common prefix, but never another slot's."""
        self._prefix = list(prefix)
        endpoint = self.process.wait_ready(self._restart_wait)
        if endpoint is not None:
            self._warm(self._client(endpoint.generation, endpoint.base_url, endpoint.api_key))

    def _warm(self, client: OpenAIBackend) -> None:
        if not self._prefix:
            return
        options = GenOptions(max_new_tokens=1, temperature=0.0)

        def fill(slot: int) -> None:
            if self._slots is not None and not self._slots.take_if_unused(slot):
                return  # someone is talking there already
            try:
                extra = {"cache_prompt": True, "id_slot": slot}
                "".join(client.generate(self._prefix, options, extra_body=extra))
            except BackendError as exc:
                logger.warning("llama-server: could not warm slot %d up: %s", slot, exc)
            finally:
                if self._slots is not None:
                    self._slots.release(slot)

        workers = [
            threading.Thread(target=fill, args=(slot,), name="llama-server-warm")
            for slot in range(self.process.command.parallel)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _stream(
        self, client: OpenAIBackend, messages: Sequence[Message], options: GenOptions
    ) -> Iterator[str]:
        slot = SLOT_ANY if self._slots is None else self._slots.acquire(conversation_key(messages))
        extra: dict[str, Any] = {"cache_prompt": True, "id_slot": slot}
        try:
            yield from client.generate(messages, options, extra_body=extra, on_extra=self._timings)
        finally:
            if self._slots is not None:
                self._slots.release(slot)

    def _timings(self, fields: dict[str, Any]) -> None:
        timings = fields.get("timings")
        if isinstance(timings, dict):
            with self._lock:
                self.prompt_tokens_reused += int(timings.get("cache_n") or 0)
                self.prompt_tokens_evaluated += int(timings.get("prompt_n") or 0)

    def _client(self, generation: int, base_url: str, api_key: str) -> OpenAIBackend:
        with self._lock:
            if self._clients is None or self._clients[0] != generation:
                if self._clients is not None and self._slots is not None:
                    self._slots.forget()
                client = OpenAIBackend(
                    base_url,
                    "solace",
                    api_key=api_key,
                    timeout_seconds=self._timeout,
                    max_retries=0,  # a retry of a dead port helps nobody: see generate()
                    n_ctx=self.n_ctx,
                )
                restarted = self._clients is not None
                self._clients = (generation, client)
                if restarted and self._prefix:  # a new server: its slots are empty
                    threading.Thread(target=self._warm, args=(client,), daemon=True).start()
            return self._clients[1]

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` as sent (control-token strings neutralised, bot/prompt_render.py)
        under the GGUF's tokenizer (no BOS); an upper estimate without llama_cpp."""
        sent = neutralise_control_tokens(text).encode("utf-8")
        if self._tokenizer is None:
            return -(-len(sent) // APPROX_BYTES_PER_TOKEN)
        return len(self._tokenizer.tokenize(sent, add_bos=False, special=False))

    def close(self) -> None:
        """Stop the child process."""
        self.process.close()


def _usable_binary(configured: Path | None) -> tuple[Path | None, str]:
    """(the binary, its version), or (None, what is wrong with it)."""
    binary = find_binary(configured)
    if binary is None:
        where = configured or f"{cache_link()} or PATH"
        return None, f"no llama-server binary ({where}); build it with `make llama-server`"
    try:
        return binary, binary_version(binary)
    except ConfigError as exc:
        return None, str(exc)


def _load_tokenizer(model: Path) -> Any:
    """The GGUF's vocabulary only (no weights); None when llama-cpp-python is missing."""
    try:
        from llama_cpp import Llama
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError:
        logger.warning("llama-cpp-python is not installed: token counts are estimates")
        return None
    # Without weights llama.cpp sees a training context of 0 and prints that any context
    # overflows it: silenced (this runs at start-up, before any other thread prints).
    try:
        with suppress_stdout_stderr(disable=False):
            return Llama(model_path=str(model), vocab_only=True, n_ctx=8, verbose=False)
    except Exception as exc:  # llama.cpp reports a bad file as ValueError/RuntimeError
        raise BackendError(f"could not read the tokenizer of {model}: {exc}") from exc


def _slot_context(n_ctx: int, tokenizer: Any) -> int:
    """`model.n_ctx`, capped at the model's training context (llama-server caps it too)."""
    if tokenizer is None:
        return n_ctx
    arch = tokenizer.metadata.get("general.architecture", "")
    trained = int(tokenizer.metadata.get(f"{arch}.context_length", 0) or 0)
    if trained and n_ctx > trained:
        logger.warning("model.n_ctx %d exceeds the model's training context %d", n_ctx, trained)
        return trained
    return n_ctx
