"""Backends: echo, the thread bridge, openai against a real local HTTP server, llama-cpp with the
real SmolLM2 GGUF."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bot.backends import (
    BACKENDS,
    EchoBackend,
    GenOptions,
    LlamaCppBackend,
    OpenAIBackend,
    build_backend,
    stream_in_thread,
)
from bot.config import Settings
from bot.engine import Engine
from bot.errors import BackendError, ConfigError
from bot.messages import IncomingMessage
from dialogue.prompts import build_messages
from tests.fakes import FakeSafety
from tests.paths import ROOT

MESSAGES = build_messages([], "I feel lonely since I moved to a new city.")


def test_registry_and_echo():
    assert set(BACKENDS) == {"llama-cpp", "llama-server", "openai", "echo"}
    backend = build_backend(Settings(model={"backend": "echo", "n_ctx": 300}))
    assert isinstance(backend, EchoBackend) and backend.n_ctx == 300
    chunks = list(backend.generate(MESSAGES, GenOptions()))
    assert "".join(chunks) == "You said: I feel lonely since I moved to a new city."
    assert len(chunks) > 3
    assert "".join(backend.generate(MESSAGES, GenOptions(max_new_tokens=3))) == "You said: I"
    assert backend.count_tokens("two words") == 2


def test_gen_options_are_strict_and_frozen():
    with pytest.raises(ValueError):
        GenOptions(temprature=0.3)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        GenOptions(top_p=0)
    options = GenOptions()
    with pytest.raises(ValueError):
        options.temperature = 1.0  # type: ignore[misc]


async def test_stream_in_thread_keeps_the_loop_free_and_releases_the_lock():
    lock = asyncio.Lock()
    ticks = 0

    def slow() -> object:
        for i in range(5):
            time.sleep(0.02)
            yield f"c{i}"

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    tick_task = asyncio.create_task(ticker())
    chunks = [c async for c in stream_in_thread(slow, lock)]  # type: ignore[arg-type]
    tick_task.cancel()
    assert chunks == ["c0", "c1", "c2", "c3", "c4"]
    assert ticks > 3  # the loop ran while the thread worked
    assert not lock.locked()

    stop_seen = threading.Event()

    def endless() -> object:
        try:
            while True:
                yield "x"
        finally:
            stop_seen.set()

    stream = stream_in_thread(endless, lock)  # type: ignore[arg-type]
    assert await anext(stream) == "x"
    await stream.aclose()
    assert await asyncio.to_thread(stop_seen.wait, 5)  # the thread was told to stop
    for _ in range(100):
        if not lock.locked():
            break
        await asyncio.sleep(0.01)
    assert not lock.locked()


async def test_stream_in_thread_reraises_errors():
    def broken() -> object:
        yield "a"
        raise BackendError("boom")

    got = []
    with pytest.raises(BackendError, match="boom"):
        async for chunk in stream_in_thread(broken):  # type: ignore[arg-type]
            got.append(chunk)
    assert got == ["a"]


# --- openai-compatible server on 127.0.0.1 ---------------------------------------------------


class FakeOpenAIServer:
    """A small real HTTP server speaking the chat-completions streaming protocol."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.mode = "ok"
        self.reply = ["Moving ", "can feel ", "so lonely. ", "What do ", "you miss most?"]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        if self.mode == "unavailable":
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        if self.mode == "slow":
            await asyncio.sleep(5)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, piece in enumerate(self.reply):
            if self.mode == "drop" and index == 2:
                request.transport.close()  # type: ignore[union-attr]
                return response
            if self.mode == "malformed" and index == 2:
                await response.write(b'data: {"choices": [{"delta": \n\n')
                continue
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "solace",
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response


@pytest.fixture
async def openai_server() -> AsyncIterator[tuple[FakeOpenAIServer, str]]:
    server = FakeOpenAIServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield server, f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


def openai_backend(url: str, **kwargs: object) -> OpenAIBackend:
    settings = Settings(
        model={"backend": "openai"},
        openai={"base_url": url, "model": "solace", "timeout_seconds": 2, **kwargs},
        openai_api_key="sk-local-test",
    )
    backend = build_backend(settings)
    assert isinstance(backend, OpenAIBackend)
    return backend


async def collect(backend: OpenAIBackend, options: GenOptions | None = None) -> list[str]:
    options = options or GenOptions(seed=3)
    return [c async for c in stream_in_thread(lambda: backend.generate(MESSAGES, options))]


async def test_openai_streams_and_sends_the_options(openai_server):
    server, url = openai_server
    chunks = await collect(openai_backend(url))
    assert chunks == server.reply
    body = server.requests[0]
    assert body["stream"] is True and body["model"] == "solace"
    assert (body["temperature"], body["top_p"], body["top_k"], body["max_tokens"]) == (
        0.7,
        0.95,
        50,
        128,
    )
    assert body["seed"] == 3 and body["messages"] == MESSAGES
    assert server.headers[0]["Authorization"] == "Bearer sk-local-test"


async def test_openai_outage_retries_then_fails_clearly(openai_server):
    server, url = openai_server
    server.mode = "unavailable"
    with pytest.raises(BackendError, match="model server"):
        await collect(openai_backend(url, max_retries=2))
    assert len(server.requests) == 3  # first try + 2 retries with backoff


@pytest.mark.parametrize("mode", ["drop", "slow", "malformed"])
async def test_openai_broken_stream_or_timeout_is_a_backend_error(openai_server, mode):
    server, url = openai_server
    server.mode = mode
    with pytest.raises(BackendError):
        await collect(openai_backend(url, max_retries=0))


async def test_openai_unreachable_server_through_the_engine(memory, settings):
    backend = openai_backend("http://127.0.0.1:9/v1", max_retries=0)  # nothing listens on 9
    engine = Engine(backend, memory, FakeSafety(), settings)
    await engine.set_country("console", "u", "")  # any write; the notice is irrelevant here
    reply = "".join([p async for p in engine.respond(IncomingMessage("console", "u", "hello"))])
    assert reply.endswith("Please try again in a moment.")
    key = memory.pseudonym("console", "u")
    assert [t.text for t in memory.recent_turns(key, 5)] == ["hello"]


# --- llama-cpp with the real embedded GGUF ----------------------------------------------------


@pytest.fixture(scope="module")
def llama_backend(smollm2_gguf: Path) -> LlamaCppBackend:
    return LlamaCppBackend(smollm2_gguf, n_ctx=1024, n_threads=2, cache_mb=128)


@pytest.mark.slow
def test_llama_cpp_streams_a_reply(llama_backend):
    chunks = list(llama_backend.generate(MESSAGES, GenOptions(seed=1, max_new_tokens=24)))
    assert len(chunks) > 3
    assert "".join(chunks).strip()
    assert llama_backend.count_tokens("hello world") in (2, 3)


@pytest.mark.slow
def test_llama_cpp_state_cache_gives_the_same_reply_as_a_cold_run(llama_backend, smollm2_gguf):
    options = GenOptions(temperature=0.0, top_k=1, seed=0, max_new_tokens=12)
    first = "".join(llama_backend.generate(MESSAGES, options))
    other_user = build_messages([], "My exam went badly and I feel stupid.")
    "".join(llama_backend.generate(other_user, options))  # evicts the first prefix
    follow_up = [*MESSAGES, {"role": "assistant", "content": first}]
    follow_up.append({"role": "user", "content": "Yes, I miss my friends."})
    hits = llama_backend.states.hits
    warm = "".join(llama_backend.generate(follow_up, options))
    assert llama_backend.states.hits == hits + 1  # the first conversation's state came back
    cold_backend = LlamaCppBackend(smollm2_gguf, n_ctx=1024, n_threads=2, cache_mb=0)
    cold = "".join(cold_backend.generate(follow_up, options))
    assert warm == cold


@pytest.mark.slow
def test_llama_cpp_bad_files_fail_clearly(smollm2_gguf, tmp_path):
    with pytest.raises(ConfigError, match="absent.gguf"):
        LlamaCppBackend(tmp_path / "absent.gguf")
    with pytest.raises(ConfigError, match="LoRA adapter file .*nope.gguf"):
        LlamaCppBackend(smollm2_gguf, lora_path=tmp_path / "nope.gguf")
    junk = tmp_path / "junk-adapter.gguf"
    junk.write_bytes(b"GGUF but not really" * 10)
    with pytest.raises(BackendError, match="junk-adapter.gguf"):
        LlamaCppBackend(smollm2_gguf, lora_path=junk, n_ctx=256)


def test_adapter_manifest_mismatch_is_warned(tmp_path, caplog):
    from bot.backends.llama_cpp import _check_adapter_manifest

    adapter = tmp_path / "adapter.gguf"
    _check_adapter_manifest(adapter, "hybrid")  # no manifest: silent
    (tmp_path / "manifest.json").write_text('{"context_representation": "raw"}')
    with caplog.at_level("WARNING"):
        _check_adapter_manifest(adapter, "hybrid")
        _check_adapter_manifest(adapter, "raw")
    assert [r.getMessage().endswith("is hybrid") for r in caplog.records] == [True]


def test_the_shipped_adapter_is_found_in_the_repository() -> None:
    """Regression (issue 16): moving bot/models.py to bot/backends/model_files.py left its project
    root at bot/, so the bot silently ran without Solace's shipped adapter."""
    from bot.backends.model_files import default_adapter_path

    root = ROOT
    shipped = root / "models" / "solace-smollm2-esconv" / "adapter.gguf"
    assert shipped.is_file()  # committed with the repository
    assert default_adapter_path() == shipped
