"""What every backend is: the `Backend` protocol, its sampling options, and the thread bridge.

`generate` blocks; the engine runs it in a worker thread through `stream_in_thread` (behind one
lock when `parallel` is False). Streaming is the only mode: a caller that wants the whole reply
writes `"".join(...)`.

Control tokens: message contents are what people wrote (and compressed forms of it). Only the chat
template may emit control tokens, so every backend keeps contents from becoming them: llama-cpp
tokenizes each content as plain text (bot/backends/prompt_render.py), openai neutralises
control-token strings before the server renders the template, echo has no template.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from dialogue.prompts import Message

if TYPE_CHECKING:
    from bot.config import Settings

# Replies streamed at once from a backend that batches them (a server). Each holds a thread; the
# loop's default pool (cores + 4 threads) would make the 7th person wait on a 2-core machine.
PARALLEL_STREAMS = 64


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


def reply_threads(backend: Backend) -> Executor | None:
    """The threads `stream_in_thread` runs replies on: a pool of PARALLEL_STREAMS for a backend
    that batches requests; None (the loop's pool) for one that answers one at a time."""
    if not backend.parallel:
        return None
    return ThreadPoolExecutor(PARALLEL_STREAMS, thread_name_prefix="solace-reply")


def warm_up_backend(backend: object, prefix: Sequence[Message]) -> None:
    """Let a backend that keeps prompt caches (llama-server's slots) evaluate `prefix` now."""
    warm_up = getattr(backend, "warm_up", None)
    if callable(warm_up):
        warm_up(prefix)


def close_backend(backend: object) -> None:
    """Release what a backend holds outside this process (llama-server: its child)."""
    close = getattr(backend, "close", None)
    if callable(close):
        close()


async def stream_in_thread(
    produce: Callable[[], Iterator[str]],
    lock: asyncio.Lock | None = None,
    executor: Executor | None = None,
) -> AsyncGenerator[str, None]:
    """Run a blocking chunk iterator in a worker thread and yield its chunks on the event loop.

    The loop never blocks. `lock` (the single local model) is taken before the thread starts and
    released when the thread has finished, even if the consumer stops early; stopping early (or
    being cancelled) tells the thread to stop after its current chunk. `executor` runs the
    thread (default: the loop's pool, which has only a few threads).
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
        future = loop.run_in_executor(executor, work)
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
