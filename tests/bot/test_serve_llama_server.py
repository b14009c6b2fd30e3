"""`solace serve` with the default config (backend auto = llama-server, 8 slots) and the real
model, over the real Telegram path (python-telegram-bot against tests/servers/telegram.py): 8
people at once; the llama-server child never outlives the bot (SIGTERM, and SIGKILL through the
kernel's death signal); `solace chat --backend llama-server` answers and frees its port. All
`slow`; skipped when the binary is missing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import pytest

from bot import texts
from tests.bot.backends.llama_rig import SECRET, pid_alive, wait_until
from tests.paths import ROOT

EIGHT_OPENERS = (
    "Work wore me out today.",
    "I argued with my sister.",
    "I can't sleep well lately.",
    "I feel lonely in this new city.",
    "My exams are next week and I'm scared.",
    "My dog is sick.",
    "I miss my grandmother.",
    "Nobody at school talks to me.",
)


def serve_env(server, db_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The environment of a `solace serve` with the default settings (only the Telegram
    endpoints, the database, the secret and shorter replies are set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLACE_")}
    return {
        **env,
        "SOLACE_TELEGRAM_TOKEN": server.token,
        "SOLACE_TELEGRAM__BASE_URL": server.base_url,
        "SOLACE_TELEGRAM__BASE_FILE_URL": server.base_file_url,
        "SOLACE_TELEGRAM__POLL_TIMEOUT_SECONDS": "1",
        "SOLACE_TELEGRAM__OVERALL_MAX_RATE": "0",
        "SOLACE_MEMORY__DB_PATH": str(db_path),
        "SOLACE_PSEUDONYM_SECRET": SECRET,
        "SOLACE_JOBS__ENABLED": "false",
        "SOLACE_GENERATION__MAX_NEW_TOKENS": "32",
        "PYTHONPATH": str(ROOT),
    }


def child_llama_servers(parent: int) -> list[int]:
    """Pids of llama-server processes whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat.split("(", 1)[1].rsplit(")", 1)
            if int(rest.split()[1]) == parent and name.startswith("llama-server"):
                found.append(int(entry.name))
    return found


def stored(db_path: Path, role: str) -> list[str]:
    """Turn texts of `role` in the database file (read-only; the bot may be writing)."""
    if not db_path.exists():
        return []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return [
            r[0] for r in conn.execute("SELECT text FROM turns WHERE role=? ORDER BY id", (role,))
        ]
    except sqlite3.OperationalError:  # not migrated yet
        return []
    finally:
        conn.close()


async def start_serve(server, tmp_path: Path) -> asyncio.subprocess.Process:  # type: ignore[no-untyped-def]
    """`solace serve --telegram` in a subprocess, its log in tmp_path/serve.log."""
    log = (tmp_path / "serve.log").open("wb")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "-v", "serve", "--telegram",
        env=serve_env(server, tmp_path / "serve.db"), cwd=tmp_path, stdout=log, stderr=log,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_solace_serve_answers_8_people_at_once_and_stops_its_child(
    tmp_path, llama_server_binary, smollm2_gguf
) -> None:
    """The default config (backend auto = llama-server, 8 slots) with the real model, 8 people
    writing at the same moment over the real PTB client; SIGTERM stops the child too."""
    from tests.servers.telegram import FakeTelegramServer

    db_path = tmp_path / "serve.db"
    async with FakeTelegramServer() as server:
        proc = await start_serve(server, tmp_path)
        try:
            users = range(1, len(EIGHT_OPENERS) + 1)
            for user, text in zip(users, EIGHT_OPENERS, strict=True):
                await server.send_text(user, text)
            async with asyncio.timeout(400):
                while len(stored(db_path, "assistant")) < len(EIGHT_OPENERS):
                    assert proc.returncode is None, (tmp_path / "serve.log").read_text()[-3000:]
                    await asyncio.sleep(0.5)
            replies = [r.strip() for r in stored(db_path, "assistant")]

            def everyone_sees_a_stored_reply() -> bool:
                finals = [(server.sent_to(u) or [None])[-1] for u in users]
                return all(m and any((m.text or "").endswith(r) for r in replies) for m in finals)

            await server.wait_for(everyone_sees_a_stored_reply, timeout=60)
            children = child_llama_servers(proc.pid)
            assert len(children) == 1
        finally:
            await server.release_polls()
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
    log = (tmp_path / "serve.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    assert "llama-server ready on 127.0.0.1" in log and "8 slots x 2048 tokens" in log
    assert all(texts.BACKEND_UNAVAILABLE not in r and r.strip() for r in replies)
    assert sorted(stored(db_path, "user")) == sorted(EIGHT_OPENERS)
    assert not any(text in log for text in EIGHT_OPENERS)  # message text is never logged
    assert not pid_alive(children[0])


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sigkill_of_solace_serve_leaves_no_orphan(
    tmp_path, llama_server_binary, smollm2_gguf
):
    """The kernel's death signal: the bot gets no chance to clean up, the child still goes."""
    from tests.servers.telegram import FakeTelegramServer

    async with FakeTelegramServer() as server:
        proc = await start_serve(server, tmp_path)
        try:
            await server.send_text(3, "Hello, is anyone there?")
            async with asyncio.timeout(200):
                while not stored(tmp_path / "serve.db", "assistant"):
                    assert proc.returncode is None, (tmp_path / "serve.log").read_text()[-3000:]
                    await asyncio.sleep(0.3)
            children = child_llama_servers(proc.pid)
            assert len(children) == 1 and pid_alive(children[0])
            proc.kill()  # SIGKILL
            await proc.wait()
        finally:
            await server.release_polls()
            if proc.returncode is None:
                proc.kill()
    assert await asyncio.to_thread(wait_until, lambda: not pid_alive(children[0]), 20)


@pytest.mark.slow
def test_solace_chat_runs_llama_server_when_asked_and_stops_it(tmp_path, llama_server_binary):
    """`solace chat --backend llama-server`: a reply, and the port is free again at exit."""
    import subprocess

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOLACE_")}
    env |= {"SOLACE_LLAMA_SERVER__PORT": str(port), "SOLACE_LLAMA_SERVER__MISSING_BINARY": "refuse",
            "SOLACE_GENERATION__MAX_NEW_TOKENS": "16", "SOLACE_MEMORY__CONTEXT_REPRESENTATION": "raw",
            "PYTHONPATH": str(ROOT)}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "chat", "--backend", "llama-server", "--db", str(tmp_path / "c.db")],
        input="I feel a bit low today.\n", capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Please try again" not in proc.stdout and len(proc.stdout.strip()) > 0
    with socket.socket() as after:
        assert after.connect_ex(("127.0.0.1", port)) != 0  # nothing listens: the child is gone
