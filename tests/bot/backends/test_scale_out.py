"""The scale-out topology on one machine, for real: the bot engine with its `openai` backend talks
to llama.cpp's llama-server (started by deploy/llama-server.sh, the compose `cpu` profile's
command, with the real SmolLM2 GGUF and two slots) on 127.0.0.1, while several people talk at
once. The model server is killed in the middle of replies and started again: people get a kind
"please try again", and every message they wrote is in the SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot import texts
from bot.config import Settings
from bot.engine import Engine, build_engine
from bot.messages import IncomingMessage
from bot.ops.health import check_model
from tests.paths import ROOT

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "deploy" / "llama-server.sh"
SECRET = "scale-out-test-secret-0123456789abcdef"
USERS = ("101", "202", "303", "404")
START_TIMEOUT_SECONDS = 90.0
OPENERS = (
    "Work wore me out today.",
    "I argued with my sister.",
    "I can't sleep well lately.",
    "I feel lonely in this new city.",
)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ModelServer:
    """deploy/llama-server.sh (it execs llama-server) as a process group that can be killed and
    started again."""

    def __init__(self, model: Path, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.env = {
            **os.environ,
            "PYTHON": sys.executable,
            "LLAMA_MODEL": str(model),
            "LLAMA_HOST": "127.0.0.1",
            "LLAMA_PORT": str(port),
            "LLAMA_PARALLEL": "2",
            "LLAMA_THREADS": "2",
            "LLAMA_N_CTX": "1024",
            "PYTHONPATH": str(ROOT),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Start the server and wait until it lists its model."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                ["bash", str(SCRIPT)],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"model server exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(f"{self.base_url}/models", timeout=2)  # 503 while loading
                if answer.status_code == 200 and any(
                    m["id"] == "solace" for m in answer.json()["data"]
                ):
                    return
            time.sleep(0.3)
        raise RuntimeError(f"model server did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, not a graceful stop)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def model_server(smollm2_gguf: Path, tmp_path: Path) -> Iterator[ModelServer]:
    """A running llama-server on a free loopback port, killed after the test."""
    from bot.backends.llama_server_command import find_binary

    if find_binary(None) is None:
        pytest.skip("llama-server is not built (make llama-server)")
    server = ModelServer(smollm2_gguf, free_port(), tmp_path / "model-server.log")
    try:
        server.start()
        yield server
    finally:
        server.kill()  # also when it failed to start: never leave a server behind


@pytest.fixture
def engine(model_server: ModelServer, tmp_path: Path) -> Iterator[Engine]:
    """The real engine (real safety layer, SQLite file) with the `openai` backend."""
    settings = Settings(
        model={"backend": "openai"},
        openai={
            "base_url": model_server.base_url,
            "model": "solace",
            "max_retries": 1,
            "timeout_seconds": 60,
            "context_tokens": 1024,
        },
        generation={"max_new_tokens": 16, "seed": 7},
        memory={"db_path": tmp_path / "solace.db", "context_representation": "hybrid"},
        pseudonym_secret=SECRET,
    )
    engine = build_engine(settings)
    yield engine
    engine.memory.db.close()


async def say(
    engine: Engine, user: str, text: str, first_chunk: asyncio.Event | None = None
) -> str:
    """One message from `user`; returns the whole reply as the person would see it."""
    reply = ""
    async for piece in engine.respond(IncomingMessage("telegram", user, text)):
        reply += piece
        if first_chunk is not None and reply.strip():
            first_chunk.set()
    return reply


async def everyone(engine: Engine, texts_by_user: dict[str, str], **kw: object) -> dict[str, str]:
    """All users send one message at the same time."""
    replies = await asyncio.gather(
        *(say(engine, user, text, **kw) for user, text in texts_by_user.items())  # type: ignore[arg-type]
    )
    return dict(zip(texts_by_user, replies, strict=True))


def stored_user_turns(db_path: Path) -> list[str]:
    """Every user turn in the database file, read through a fresh connection."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT text FROM turns WHERE role='user' ORDER BY id")]
    finally:
        conn.close()


async def test_conversations_survive_a_model_server_crash(
    engine: Engine, model_server: ModelServer
) -> None:
    """Concurrent users; the server dies mid-reply and comes back; no user turn is lost."""
    sent: list[str] = []

    def round_of(label: str) -> dict[str, str]:
        batch = {u: f"{OPENERS[i]} ({label} {u})" for i, u in enumerate(USERS)}
        sent.extend(batch.values())
        return batch

    # 1. Everyone talks at once; the server answers all of them.
    first = await everyone(engine, round_of("first"))
    for reply in first.values():
        assert reply.strip() and texts.BACKEND_UNAVAILABLE not in reply

    # 2. The server is killed as soon as the first reply starts streaming.
    started = asyncio.Event()

    async def crash() -> None:
        await started.wait()
        await asyncio.to_thread(model_server.kill)

    crasher = asyncio.create_task(crash())
    during = await everyone(engine, round_of("during"), first_chunk=started)
    await crasher
    cut = [u for u, reply in during.items() if reply.endswith(texts.BACKEND_UNAVAILABLE)]
    assert cut, f"someone must have been cut off by the crash: {during}"
    for reply in during.values():
        assert "Traceback" not in reply and reply.strip()

    # 3. While it is down, people still get the kind message, immediately.
    down = await everyone(engine, round_of("down"))
    assert all(reply.endswith(texts.BACKEND_UNAVAILABLE) for reply in down.values())
    assert check_model(engine.settings).status == "fail"  # `solace health` sees it too

    # 4. The server is back: conversations continue.
    await asyncio.to_thread(model_server.start)
    assert check_model(engine.settings).status == "ok"
    after = await everyone(engine, round_of("after"))
    for reply in after.values():
        assert reply.strip() and texts.BACKEND_UNAVAILABLE not in reply

    # No turn was lost: every message each person wrote is in the SQLite file, in order per user.
    stored = stored_user_turns(engine.settings.memory.db_path)
    assert sorted(stored) == sorted(sent)
    for user in USERS:
        mine = [t for t in stored if t.endswith(f" {user})")]
        assert [t.split("(")[1].split()[0] for t in mine] == ["first", "during", "down", "after"]
    stats = await engine.stats()
    assert stats["users"] == len(USERS) and stats.get("events_backend_error", 0) >= len(USERS)
