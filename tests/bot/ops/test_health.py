"""`solace health`: real files, a real loopback HTTP server, and no secret ever printed."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.config import Settings
from tests.bot.ops.conftest import PSEUDONYM_SECRET

TELEGRAM_TOKEN = "1234567890:" + secrets.token_urlsafe(26)[:35]
DISCORD_TOKEN = ".".join(
    [secrets.token_urlsafe(18), secrets.token_urlsafe(5), secrets.token_urlsafe(27)]
)


class _ModelsHandler(BaseHTTPRequestHandler):
    """Answers GET /v1/models like an OpenAI-compatible server serving "solace"."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path != "/v1/models":
            self.send_error(404)
            return
        body = json.dumps({"object": "list", "data": [{"id": "solace"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def model_server() -> Iterator[str]:
    """A loopback HTTP server with /v1/models; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ModelsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _health(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(cli, ["health", "--json", *args])
    for secret in (TELEGRAM_TOKEN, DISCORD_TOKEN, PSEUDONYM_SECRET):
        assert secret not in result.output
    return result.exit_code, json.loads(result.output)


def _status(report: dict) -> dict[str, str]:
    return {check["name"]: check["status"] for check in report["checks"]}


async def test_healthy_deployment_exits_zero_and_never_prints_tokens(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both adapters enabled with well-shaped tokens (Discord: the loopback REST server, with
    this version's commands registered): all required checks pass."""
    import asyncio

    from bot import texts
    from tests.servers.discord import FakeDiscordREST
    from tests.servers.discord_app import ApplicationAPI

    monkeypatch.setenv("SOLACE_TELEGRAM__ENABLED", "true")
    monkeypatch.setenv("SOLACE_TELEGRAM_TOKEN", TELEGRAM_TOKEN)
    monkeypatch.setenv("SOLACE_DISCORD__ENABLED", "true")
    monkeypatch.setenv("SOLACE_DISCORD_TOKEN", DISCORD_TOKEN)
    async with FakeDiscordREST(token=DISCORD_TOKEN) as rest:
        app = ApplicationAPI(rest)
        app.commands["global"] = [
            {"name": name, "description": words} for name, words in texts.DISCORD_COMMANDS.items()
        ]
        monkeypatch.setenv("SOLACE_DISCORD__REST_BASE_URL", rest.base_url)
        code, report = await asyncio.to_thread(_health)
        text = (await asyncio.to_thread(CliRunner().invoke, cli, ["health"])).output
    status = _status(report)
    assert code == 0 and report["ok"] is True
    assert status["database"] == status["telegram_token"] == status["discord_token"] == "ok"
    assert status["pseudonym_secret"] == status["discord_commands"] == "ok"
    assert status["model"] == "warn"  # echo answers nobody; a warning, not a failure
    assert "ok   database" in text and TELEGRAM_TOKEN not in text and DISCORD_TOKEN not in text


def test_badly_shaped_or_missing_tokens_fail(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token that cannot be right, or an enabled adapter without one, exits 1."""
    monkeypatch.setenv("SOLACE_TELEGRAM__ENABLED", "true")
    monkeypatch.setenv("SOLACE_TELEGRAM_TOKEN", "not a token " + TELEGRAM_TOKEN)
    monkeypatch.setenv("SOLACE_DISCORD__ENABLED", "true")
    code, report = _health()
    status = _status(report)
    assert code == 1 and report["ok"] is False
    assert status["telegram_token"] == "fail" and status["discord_token"] == "fail"


@pytest.mark.parametrize(
    "telegram, discord",
    [
        ("1234:" + "A" * 35, "a" * 18 + ".bcdefg." + "h" * 27),  # short ids both platforms issue
        ("123456789:" + "b" * 70, "x" * 24 + ".Ab1_-." + "y" * 38),  # a long secret part
    ],
)
def test_health_accepts_every_token_serve_accepts(
    env: Path, monkeypatch: pytest.MonkeyPatch, telegram: str, discord: str
) -> None:
    """One token rule per platform: `solace health` passes the tokens `solace serve` takes.

    Regression (issue 16): health had its own patterns (at least 5 digits and at most 64
    characters for Telegram, 20 characters for Discord's first part) and failed these.
    """
    from bot.secrets import discord_token, telegram_token

    settings = Settings(telegram_token=telegram, discord_token=discord)
    assert telegram_token(settings) == telegram and discord_token(settings) == discord
    monkeypatch.setenv("SOLACE_TELEGRAM__ENABLED", "true")
    monkeypatch.setenv("SOLACE_TELEGRAM_TOKEN", telegram)
    monkeypatch.setenv("SOLACE_DISCORD__ENABLED", "true")
    monkeypatch.setenv("SOLACE_DISCORD_TOKEN", discord)
    result = CliRunner().invoke(cli, ["health", "--json"])
    assert telegram not in result.output and discord not in result.output
    status = _status(json.loads(result.output))
    assert status["telegram_token"] == status["discord_token"] == "ok"


def test_missing_or_unmigrated_database_fails(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No file (and none created by the check), or a file without the schema, exits 1."""
    missing = env.parent / "other" / "solace.db"
    monkeypatch.setenv("SOLACE_MEMORY__DB_PATH", str(missing))
    code, report = _health()
    assert code == 1 and _status(report)["database"] == "fail"
    assert not missing.exists()
    bare = env.parent / "bare.db"
    sqlite3.connect(bare).execute("CREATE TABLE x (y)").connection.close()
    monkeypatch.setenv("SOLACE_MEMORY__DB_PATH", str(bare))
    code, report = _health()
    detail = next(c["detail"] for c in report["checks"] if c["name"] == "database")
    assert code == 1 and "solace migrate" in detail


def test_invalid_settings_fail_cleanly(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value is reported as the config check, not a traceback."""
    monkeypatch.setenv("SOLACE_MODEL__N_CTX", "tiny")
    code, report = _health()
    assert code == 1 and _status(report) == {"config": "fail"}


def test_openai_backend_reachable_then_down(
    env: Path, model_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model check asks the server's /models; a server that is gone fails the check."""
    monkeypatch.setenv("SOLACE_MODEL__BACKEND", "openai")
    monkeypatch.setenv("SOLACE_OPENAI__BASE_URL", model_server)
    code, report = _health()
    assert code == 0 and _status(report)["model"] == "ok"
    monkeypatch.setenv("SOLACE_OPENAI__MODEL", "another-model")
    assert _status(_health()[1])["model"] == "warn"
    monkeypatch.setenv("SOLACE_OPENAI__BASE_URL", "http://127.0.0.1:9/v1")  # discard port
    code, report = _health()
    assert code == 1 and _status(report)["model"] == "fail"


def test_local_model_file_checked_without_loading(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama-cpp: a missing file or a file that is not GGUF fails."""
    monkeypatch.setenv("SOLACE_MODEL__BACKEND", "llama-cpp")
    monkeypatch.setenv("SOLACE_MODEL__PATH", str(tmp_path / "missing.gguf"))
    assert _status(_health()[1])["model"] == "fail"
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"NOPE" + b"\0" * 64)
    monkeypatch.setenv("SOLACE_MODEL__PATH", str(fake))
    code, report = _health()
    assert code == 1 and "not a GGUF" in json.dumps(report)


def test_generate_check_with_echo(env: Path) -> None:
    """--generate builds the backend and produces text."""
    code, report = _health("--generate")
    assert _status(report)["generate"] == "ok" and code == 0


def test_semantic_layer_state_is_reported_and_never_fails_health(
    env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 17: a missing encoder is a warning naming the fix; the rules still screen."""
    monkeypatch.setenv("SOLACE_SAFETY__ENCODER_PATH", str(tmp_path / "absent.gguf"))
    code, report = _health()
    semantic = next(c for c in report["checks"] if c["name"] == "semantic")
    assert semantic["status"] == "warn" and "make encoder" in semantic["detail"]
    assert "rules run alone" in semantic["detail"] and code == 0
    monkeypatch.setenv("SOLACE_SAFETY__SEMANTIC", "false")
    assert _status(_health()[1])["semantic"] == "warn"


@pytest.mark.slow
def test_semantic_layer_ok_with_the_real_files(env: Path) -> None:
    from bot.safety.semantic import DEFAULT_CLASSIFIER_PATH, DEFAULT_ENCODER_PATH

    if not (DEFAULT_ENCODER_PATH.is_file() and DEFAULT_CLASSIFIER_PATH.is_file()):
        pytest.skip("run `make encoder` for the GGUF encoder")
    assert _status(_health()[1])["semantic"] == "ok"
