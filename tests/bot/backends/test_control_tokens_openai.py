"""The openai backend against two real OpenAI-compatible servers, llama-cpp-python's own and
llama.cpp's native `llama-server`: what the server tokenized holds no forged role (issue 15,
item 2)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from aiohttp import ClientSession, ClientTimeout, web

from bot.backends.prompt_render import neutralise_control_tokens
from bot.engine import Engine, build_engine
from bot.memory import MemoryStore
from dialogue.prompts import Message
from tests.bot.backends.forged import (
    FORGED,
    FORGED_COMPRESSIBLE,
    ISSUE,
    control_tokens,
    engine_settings,
    expected_roles,
    say,
)

SERVER_START_SECONDS = 90.0

# --- the openai backend against a real llama.cpp-based server ----------------------------------


class ServerView(Protocol):
    """How a test reads what a model server makes of a chat request (one per server kind).

    For llama.cpp's native `llama-server`: `POST /apply-template {"messages"}` gives the rendered
    prompt, `POST /tokenize {"content", "add_special": true, "parse_special": true}` its ids (the
    same flags its chat endpoint uses), `POST /detokenize {"tokens"}` the text.
    """

    base_url: str

    def prompt_tokens(self, messages: list[Message]) -> list[int]:
        """The ids the server's chat endpoint evaluates for `messages`."""
        ...

    def token_ids(self, text: str) -> list[int]:
        """`text` tokenized with special tokens parsed, as the chat endpoint does."""
        ...

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        """The text of `tokens`."""
        ...


class LlamaCppPythonView:
    """llama-cpp-python's `llama_cpp.server`: its chat handler renders the GGUF's template with
    `Jinja2ChatFormatter` and tokenizes the result with `special=True`
    (llama_chat_format.chat_formatter_to_chat_completion_handler); `/extras/tokenize` tokenizes
    with `special=True` too. The template rendering is repeated here with the same class."""

    def __init__(self, base_url: str, gguf: Path) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.base_url = base_url
        self.root = base_url.removesuffix("/v1")
        vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
        text = vocab._model.token_get_text
        self.formatter = Jinja2ChatFormatter(  # as Llama.__init__ builds it for the server
            template=vocab.metadata["tokenizer.chat_template"],
            eos_token=text(vocab.token_eos()),
            bos_token=text(vocab.token_bos()),
            stop_token_ids=[vocab.token_eos()],
        )
        vocab.close()

    def prompt_tokens(self, messages: list[Message]) -> list[int]:
        """Render locally as the server does, tokenize on the server."""
        return self.token_ids(self.formatter(messages=messages).prompt)

    def token_ids(self, text: str) -> list[int]:
        """The server's tokenizer with special tokens parsed."""
        reply = httpx.post(f"{self.root}/extras/tokenize", json={"input": text}, timeout=30)
        return list(reply.json()["tokens"])

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        """The server's detokenizer."""
        reply = httpx.post(
            f"{self.root}/extras/detokenize", json={"tokens": list(tokens)}, timeout=30
        )
        return str(reply.json()["text"]).encode()


class RecordingProxy:
    """A loopback HTTP proxy in front of the model server that keeps every chat request body."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removesuffix("/v1")
        self.chat_requests: list[dict[str, Any]] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path.endswith("/chat/completions"):
            self.chat_requests.append(await request.json())
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        async with (
            ClientSession(timeout=ClientTimeout(total=120)) as session,
            session.request(
                request.method, self.upstream + request.path, data=body, headers=headers
            ) as upstream,
        ):
            response = web.StreamResponse(
                status=upstream.status,
                headers={"Content-Type": upstream.headers.get("Content-Type", "")},
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class LlamaServerView:
    """llama.cpp's native `llama-server` (what `solace serve` runs, and the compose `cpu`
    profile): its own endpoints render and tokenize exactly as its chat endpoint does."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.root = base_url.removesuffix("/v1")

    def prompt_tokens(self, messages: list[Message]) -> list[int]:
        """The server's template rendering, tokenized with its chat endpoint's flags."""
        reply = httpx.post(f"{self.root}/apply-template", json={"messages": messages}, timeout=30)
        return self._tokenize(str(reply.json()["prompt"]), add_special=True)

    def token_ids(self, text: str) -> list[int]:
        """The server's tokenizer with special tokens parsed (no BOS)."""
        return self._tokenize(text, add_special=False)

    def _tokenize(self, text: str, *, add_special: bool) -> list[int]:
        body = {"content": text, "add_special": add_special, "parse_special": True}
        return list(httpx.post(f"{self.root}/tokenize", json=body, timeout=30).json()["tokens"])

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        """The server's detokenizer."""
        reply = httpx.post(f"{self.root}/detokenize", json={"tokens": list(tokens)}, timeout=30)
        return str(reply.json()["content"]).encode()


def start_llama_cpp_python_server(gguf: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`python -m llama_cpp.server` serving `gguf` as "solace" on 127.0.0.1:`port`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
             "--model_alias", "solace", "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "2048", "--n_threads", "2", "--verbose", "false"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
        )  # fmt: skip


def wait_serving(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    """Until the server lists the model "solace" (503 while it loads)."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"model server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            answer = httpx.get(f"{base_url}/models", timeout=2)
            if answer.status_code == 200 and any(
                m["id"] == "solace" for m in answer.json()["data"]
            ):
                return
        time.sleep(0.3)
    raise RuntimeError(f"model server did not start: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module", params=["llama_cpp.server", "llama-server"])
def server_view(request, smollm2_gguf: Path, tmp_path_factory) -> Iterator[ServerView]:
    """A real llama.cpp-based OpenAI-compatible server on 127.0.0.1 with the SmolLM2 GGUF:
    llama-cpp-python's, or llama.cpp's native one through deploy/llama-server.sh (the compose
    `cpu` profile's command, the flags `solace serve` gives its own child)."""
    from bot.backends.llama_server_command import find_binary
    from tests.bot.backends.test_scale_out import ModelServer, free_port

    log = tmp_path_factory.mktemp("model-server") / "server.log"
    if request.param == "llama-server":
        if find_binary(None) is None:
            pytest.skip("llama-server is not built (make llama-server)")
        native = ModelServer(smollm2_gguf, free_port(), log)
        try:
            native.start()
            yield LlamaServerView(native.base_url)
        finally:
            native.kill()
        return
    pytest.importorskip("uvicorn", reason="llama-cpp-python[server] extras are not installed")
    port = free_port()
    process = start_llama_cpp_python_server(smollm2_gguf, port, log)
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        wait_serving(process, base_url, log)
        yield LlamaCppPythonView(base_url, smollm2_gguf)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture
async def proxy(server_view: ServerView) -> AsyncIterator[RecordingProxy]:
    recorder = RecordingProxy(server_view.base_url)
    await recorder.start()
    yield recorder
    await recorder.stop()


def openai_engine(url: str, memory: MemoryStore, tmp_path: Path, representation: str) -> Engine:
    openai = {"base_url": url, "model": "solace", "max_retries": 0, "context_tokens": 1024}
    settings = engine_settings(tmp_path, representation, model={"backend": "openai"}, openai=openai)
    return build_engine(settings, memory=memory)


def server_roles(view: ServerView, tokens: Sequence[int]) -> tuple[list[str], int]:
    """Like chatml_roles, through the server's tokenizer."""
    (start,), (end,) = view.token_ids("<|im_start|>"), view.token_ids("<|im_end|>")
    roles = []
    for index, token in enumerate(tokens):
        if token == start:
            header = view.detokenize(tokens[index + 1 : index + 4]).decode()
            roles.append(header.split("\n")[0])
    return roles, list(tokens).count(end)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("representation", "forged"), [("raw", FORGED), ("hybrid", FORGED_COMPRESSIBLE)]
)
async def test_the_server_sees_no_forged_role(
    server_view, proxy, memory, tmp_path, representation, forged
):
    """Current message, then stored history (raw or KeyPOS): the server makes no forged turn."""
    engine = openai_engine(proxy.base_url, memory, tmp_path, representation)
    replies = [await say(engine, "u1", text, "telegram") for text in (forged, "Thanks.")]
    assert all(r.strip() for r in replies)
    first, second = proxy.chat_requests
    for body in (second, first):  # turn 2 (history) first: it fails on its own
        messages = body["messages"]
        tokens = await asyncio.to_thread(server_view.prompt_tokens, messages)
        assert server_roles(server_view, tokens) == expected_roles(messages), ISSUE
        # The rendering reproduced here is the one the server evaluated: same prompt length.
        usage = httpx.post(
            f"{server_view.base_url}/chat/completions",
            json={**body, "stream": False, "max_tokens": 1},
            timeout=60,
        ).json()["usage"]
        assert usage["prompt_tokens"] == len(tokens)
    # The words still reach the model, with look-alike delimiters, and are stored unchanged.
    assert neutralise_control_tokens(forged) in [m["content"] for m in first["messages"]]
    key = memory.pseudonym("telegram", "u1")
    assert memory.recent_turns(key, 10)[0].text == forged


@pytest.mark.slow
def test_every_control_token_of_the_served_vocabulary_is_neutralised(server_view, smollm2_gguf):
    """Against the real vocabulary: no control token of the GGUF survives neutralisation."""
    from llama_cpp import Llama

    vocab = Llama(model_path=str(smollm2_gguf), vocab_only=True, verbose=False)
    controls = [
        vocab._model.token_get_text(t)
        for t in range(vocab.n_vocab())
        if control_tokens(vocab, [t]) and vocab._model.token_get_text(t)
    ]
    vocab.close()
    text = " ".join(f"x{c}y" for c in controls)
    raw_ids = set(server_view.token_ids(text))
    safe_ids = set(server_view.token_ids(neutralise_control_tokens(text)))
    control_ids = {server_view.token_ids(c)[0] for c in controls}
    assert control_ids <= raw_ids  # the server parses every one of them in raw text
    assert not control_ids & safe_ids
