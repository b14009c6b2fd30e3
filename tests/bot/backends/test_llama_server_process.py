"""The supervised llama-server child (bot/backends/llama_server_process.py and
llama_server_command.py): its command line and environment, a missing or broken binary, wrong
model files, a taken port, a crash and a hang of the child (people get the kind reply, nothing
they wrote is lost, the server comes back). Most tests run the real binary with the real SmolLM2
GGUF (marked `slow`; skipped when the binary is missing).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
from pathlib import Path

import httpx
import pytest

from bot import texts
from bot.backends import LlamaCppBackend, build_backend
from bot.backends.llama_server import LlamaServerBackend
from bot.backends.llama_server_command import ServerCommand, child_env
from bot.engine import build_engine
from bot.errors import BackendError, ConfigError
from bot.messages import IncomingMessage
from bot.ops.health import check_model
from tests.bot.backends.llama_rig import (
    make_settings,
    pid_alive,
    say,
    stored_user_turns,
    wait_until,
)


def test_command_line_has_the_flags_and_never_the_key(tmp_path: Path, monkeypatch) -> None:
    command = ServerCommand(
        Path("/bin/ls"), tmp_path / "m.gguf", tmp_path / "a.gguf", 4, 1024, 2, 128
    )
    argv = command.argv("127.0.0.1", 5555)
    value = {flag: argv[argv.index(flag) + 1] for flag in ("--parallel", "--ctx-size", "--lora")}
    assert value == {"--parallel": "4", "--ctx-size": "4096", "--lora": str(tmp_path / "a.gguf")}
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and "--api-key" not in argv
    # Flash attention is always explicit (llama-server's own default, auto, turns it on on CPU;
    # the embedded model has it off) and follows model.flash_attn.
    assert argv[argv.index("--flash-attn") + 1] == "off"
    on = dataclasses.replace(command, flash_attn=True).argv("127.0.0.1", 5555)
    assert on[on.index("--flash-attn") + 1] == "on"
    monkeypatch.setenv("SOLACE_TELEGRAM_TOKEN", "123:secret-telegram-token")
    monkeypatch.setenv("LLAMA_ARG_CTX_SIZE", "99")  # would silently change the server's flags
    env = child_env("k3y")
    assert (
        "LLAMA_ARG_CTX_SIZE" not in env
        and env["LLAMA_API_KEY"] == "k3y"
        and "SOLACE_TELEGRAM_TOKEN" not in env
    )


@pytest.mark.slow
def test_missing_binary_warns_once_and_uses_the_embedded_model(tmp_path, smollm2_gguf, caplog):
    absent = {"binary": tmp_path / "no-such-llama-server"}
    with caplog.at_level(logging.WARNING):
        built = build_backend(make_settings(tmp_path, llama_server=absent))
    assert isinstance(built, LlamaCppBackend)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "make llama-server" in warnings[0], warnings
    refuse = {**absent, "missing_binary": "refuse"}
    with pytest.raises(ConfigError, match="no-such-llama-server"):
        build_backend(make_settings(tmp_path, llama_server=refuse))
    broken = tmp_path / "broken-llama-server"
    broken.write_text("#!/bin/sh\necho 'error while loading shared libraries' >&2\nexit 127\n")
    broken.chmod(0o755)
    with pytest.raises(ConfigError, match="exit 127"):
        build_backend(make_settings(tmp_path, llama_server={**refuse, "binary": broken}))
    assert check_model(make_settings(tmp_path, llama_server=absent)).status == "warn"
    assert check_model(make_settings(tmp_path, llama_server=refuse)).status == "fail"


@pytest.mark.slow
def test_wrong_model_files_fail_clearly(tmp_path, llama_server_binary, smollm2_gguf) -> None:
    with pytest.raises(ConfigError, match="absent.gguf"):
        build_backend(make_settings(tmp_path, model={"path": tmp_path / "absent.gguf"}))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + os.urandom(2000))
    with pytest.raises(BackendError, match="junk.gguf"):
        build_backend(make_settings(tmp_path, model={"path": junk}))
    adapter = tmp_path / "junk-adapter.gguf"
    adapter.write_bytes(b"GGUF" + b"\0" * 2000)
    with pytest.raises(BackendError, match="llama-server did not start"):
        build_backend(make_settings(tmp_path, model={"lora_path": adapter}))


@pytest.mark.slow
def test_a_crash_mid_reply_gets_the_kind_reply_and_the_server_comes_back(
    tmp_path, llama_server_binary, smollm2_gguf
) -> None:
    settings = make_settings(tmp_path, generation={"max_new_tokens": 64, "temperature": 0.0})
    engine = build_engine(settings)
    backend = engine.backend
    assert isinstance(backend, LlamaServerBackend)
    users = ("1", "2", "3")
    try:
        for user in users:
            engine.memory.mark_notice_seen(engine.memory.pseudonym("telegram", user), "telegram")
        first_pid = backend.process.pid
        assert first_pid is not None

        async def crash_while_streaming() -> list[str]:
            started = asyncio.Event()

            async def one(user: str) -> str:
                out = ""
                async for piece in engine.respond(
                    IncomingMessage("telegram", user, "Work wore me out today and I feel drained.")
                ):
                    out += piece
                    started.set()
                return out

            tasks = [asyncio.create_task(one(u)) for u in users]
            await started.wait()
            os.kill(first_pid, signal.SIGKILL)
            return await asyncio.gather(*tasks)

        during = asyncio.run(crash_while_streaming())
        assert any(r.endswith(texts.BACKEND_UNAVAILABLE) for r in during), during
        assert all(r.strip() and "Traceback" not in r for r in during)
        assert wait_until(lambda: backend.process.pid not in (None, first_pid), 60)
        after = [say(engine, u, "I'm back, are you there?") for u in users]
        assert all(r.strip() and texts.BACKEND_UNAVAILABLE not in r for r in after), after
        # Killed while idle: the next message fails on the dead port, then goes to the new one.
        os.kill(backend.process.pid or 0, signal.SIGKILL)
        assert texts.BACKEND_UNAVAILABLE not in say(engine, "1", "One more thing.")
        assert backend.process.restarts >= 2
        stored = stored_user_turns(settings.memory.db_path)
        assert len(stored) == 2 * len(users) + 1  # every message anyone wrote is stored
    finally:
        backend.close()
        engine.memory.db.close()


@pytest.mark.slow
def test_a_hung_server_gets_the_kind_reply_and_is_restarted(
    tmp_path, llama_server_binary, smollm2_gguf, caplog
) -> None:
    # The request gives up after 2 s, the watchdog after 1 + 5 s: the person is told kindly at
    # once, and the hung server is killed and replaced behind them.
    fast = {"watchdog_interval_seconds": 1, "watchdog_timeout_seconds": 5,
            "request_timeout_seconds": 2}  # fmt: skip
    settings = make_settings(tmp_path, llama_server=fast)
    engine = build_engine(settings)
    backend = engine.backend
    assert isinstance(backend, LlamaServerBackend)
    try:
        engine.memory.mark_notice_seen(engine.memory.pseudonym("telegram", "9"), "telegram")
        hung = backend.process.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)  # alive, but answers nothing
        with caplog.at_level(logging.ERROR):
            reply = say(engine, "9", "Are you there?")
            assert reply.endswith(texts.BACKEND_UNAVAILABLE)
            # The new server's pid, not the old one's: Popen.poll() answers None while the
            # supervisor's thread is still reaping the killed process, so the old pid can show.
            assert wait_until(lambda: backend.process.pid not in (None, hung), 60)
        assert not pid_alive(hung)
        assert any("stopped answering" in r.getMessage() for r in caplog.records)
        endpoint = backend.process.wait_ready(30)
        assert endpoint is not None and endpoint.generation == 2
        root = endpoint.base_url.removesuffix("/v1")
        auth = {"Authorization": f"Bearer {endpoint.api_key}"}
        assert httpx.get(f"{root}/slots", headers=auth, timeout=30).status_code == 200
        assert stored_user_turns(settings.memory.db_path) == ["Are you there?"]
    finally:
        replacement = backend.process.pid
        backend.close()
        engine.memory.db.close()
    assert replacement is None or not pid_alive(replacement)


@pytest.mark.slow
def test_a_taken_port_is_a_clear_error(tmp_path, llama_server_binary, smollm2_gguf) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BackendError, match=f"port {port} is already in use"):
            build_backend(make_settings(tmp_path, llama_server={"port": port}))
