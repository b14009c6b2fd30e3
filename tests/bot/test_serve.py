"""`solace serve` (bot/serve.py): both platforms on one loop, start-up errors, tokens never logged."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest


# --- `solace serve` ----------------------------------------------------------------------------
async def test_solace_serve_end_to_end_and_token_never_logged(tmp_path: Path) -> None:
    """The real CLI in a subprocess: starts, answers over Telegram, stops on SIGTERM."""
    import os
    import signal
    import sys

    from tests.servers.telegram import FakeTelegramServer

    async with FakeTelegramServer() as server:
        env = {
            **os.environ,
            "SOLACE_TELEGRAM_TOKEN": server.token,
            "SOLACE_TELEGRAM__BASE_URL": server.base_url,
            "SOLACE_TELEGRAM__BASE_FILE_URL": server.base_file_url,
            "SOLACE_TELEGRAM__POLL_TIMEOUT_SECONDS": "1",
            "SOLACE_MEMORY__DB_PATH": str(tmp_path / "serve.db"),
            "SOLACE_MEMORY__CONTEXT_REPRESENTATION": "raw",
            "SOLACE_PSEUDONYM_SECRET": "s" * 32,
            "SOLACE_JOBS__ENABLED": "false",
        }
        env.pop("SOLACE_CONFIG", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "-vv",
            "serve",
            "--telegram",
            "--backend",
            "echo",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await server.send_text(5, "hello from the real cli")
            await server.wait_for(
                lambda: any(
                    (m.text or "").endswith("You said: hello from the real cli")
                    for m in server.sent_to(5)
                ),
                timeout=60,
            )
        finally:
            await server.release_polls()
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    log = err.decode()
    assert proc.returncode == 0, log[-2000:]
    assert "telegram: polling as @solace_test_bot" in log
    assert server.token not in log and server.token.split(":")[1] not in log
    assert "hello from the real cli" not in log  # message text is never logged


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["serve"], {}, "nothing to serve"),
        (["serve", "--telegram"], {}, "SOLACE_TELEGRAM_TOKEN is not set"),
        (["serve", "--telegram"], {"SOLACE_TELEGRAM_TOKEN": "oops"}, "malformed"),
        (["serve", "--discord"], {"SOLACE_DISCORD_TOKEN": "Bot a.b.c"}, "without 'Bot '"),
    ],
)
def test_serve_start_up_errors_are_clear(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, args, env, expected
) -> None:
    from click.testing import CliRunner

    from bot.cli import cli

    clean_env.setenv("SOLACE_MEMORY__DB_PATH", str(tmp_path / "x.db"))
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 1
    assert expected in result.output
    assert "oops" not in result.output


def test_redactor_blanks_tokens_in_messages_args_and_tracebacks() -> None:
    from bot.serve import SecretRedactor

    token = "123456:" + "A" * 35
    redactor = SecretRedactor([token])
    try:
        raise ValueError(f"https://api.telegram.org/bot{token}/getMe failed")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "url %s", (f"/bot{token}/x",), sys.exc_info()
        )
    assert redactor.filter(record)
    formatted = logging.Formatter().format(record)
    assert token not in formatted and "[token]" in formatted
