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


async def test_solace_serve_webhook_mode_sets_and_deletes_the_webhook(tmp_path: Path) -> None:
    """The real CLI in webhook mode: setWebhook at start (URL, allowed updates, the secret from
    the environment), answers a delivered update, deleteWebhook on SIGTERM; neither the token nor
    the webhook secret in the `-vv` log."""
    import os
    import signal
    import sys

    from tests.servers.rigs import free_port
    from tests.servers.telegram import FakeTelegramServer

    port, secret = free_port(), "serve-webhook-secret-" + "w" * 20
    async with FakeTelegramServer() as server:
        env = {
            **os.environ,
            "SOLACE_TELEGRAM_TOKEN": server.token,
            "SOLACE_TELEGRAM_WEBHOOK_SECRET": secret,
            "SOLACE_TELEGRAM__BASE_URL": server.base_url,
            "SOLACE_TELEGRAM__BASE_FILE_URL": server.base_file_url,
            "SOLACE_TELEGRAM__MODE": "webhook",
            "SOLACE_TELEGRAM__WEBHOOK_PORT": str(port),
            "SOLACE_TELEGRAM__WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram",
            "SOLACE_MEMORY__DB_PATH": str(tmp_path / "serve.db"),
            "SOLACE_MEMORY__CONTEXT_REPRESENTATION": "raw",
            "SOLACE_PSEUDONYM_SECRET": "s" * 32,
            "SOLACE_JOBS__ENABLED": "false",
        }
        env.pop("SOLACE_CONFIG", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "-vv", "serve", "--telegram", "--backend", "echo",
            env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await server.wait_for(lambda: bool(server.webhook.set_calls), timeout=60)
            await server.send_text(6, "hello through the webhook")
            await server.wait_for(
                lambda: any((m.text or "").endswith("hello through the webhook")
                            for m in server.sent_to(6)),
                timeout=60,
            )  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    log = err.decode()
    assert proc.returncode == 0, log[-2000:]
    (call,) = server.webhook.set_calls
    assert call["url"] == f"http://127.0.0.1:{port}/telegram" and call["secret_token"] == secret
    assert call["allowed_updates"] == ["message", "callback_query"]
    assert len(server.webhook.delete_calls) == 1 and server.webhook.url == ""
    assert f"telegram: webhook http://127.0.0.1:{port}/telegram as @solace_test_bot" in log
    assert server.token not in log and secret not in log
    assert "hello through the webhook" not in log


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
