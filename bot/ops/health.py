"""`solace health`: is this deployment able to answer people? Checks, never secrets.

Each check returns a `Check(name, status, detail)` with status "ok", "warn" or "fail"; the
deployment is healthy when nothing failed. Details name files, URLs, counts and shapes, never a
token's or secret's value (not even a prefix). The checks are cheap enough for a container health
check every 30 s: the model is not loaded and nothing is generated unless `generate=True`.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bot.config import Settings
from bot.memory.backup import default_backup_dir, list_backups
from bot.ops.checks import HTTP_TIMEOUT_SECONDS, Check, Status
from bot.ops.platforms import check_discord_commands, check_telegram_webhook
from bot.secrets import token_shape_ok

MIN_SECRET_CHARS = 16
LOW_DISK_BYTES = 1 << 30
STALE_BACKUP_SECONDS = 2 * 86_400
GGUF_MAGIC = b"GGUF"


def check_database(settings: Settings) -> Check:
    """The database file exists, opens, passes `quick_check`, and has no pending migrations."""
    from sqlite_utils import Database

    from bot.memory import migrations

    path = Path(settings.memory.db_path).expanduser()
    if not path.is_file():
        return Check("database", "fail", f"{path} does not exist (the bot creates it at start)")
    try:
        conn = sqlite3.connect(f"file:{path.resolve().as_posix()}?mode=rw", uri=True, timeout=5)
        try:
            quick = "; ".join(str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall())
            pending = [m.name for m in migrations.pending(Database(conn))]
            turns = _count(conn, "turns")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check("database", "fail", f"{path}: {exc}")
    if quick != "ok":
        return Check("database", "fail", f"{path}: quick_check: {quick}")
    if pending:
        return Check(
            "database", "fail", f"{path}: pending migrations {pending}; run `solace migrate`"
        )
    return Check("database", "ok", f"{path} ({path.stat().st_size} bytes, {turns} turns)")


def _count(conn: sqlite3.Connection, table: str) -> int | str:
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM [{table}]").fetchone()[0])
    except sqlite3.Error:
        return "no"


def check_disk(settings: Settings) -> Check:
    """Free space where the database lives (SQLite fails writes on a full disk)."""
    folder = Path(settings.memory.db_path).expanduser().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    status: Status = "warn" if free < LOW_DISK_BYTES else "ok"
    return Check("disk", status, f"{free // (1 << 20)} MiB free in {folder}")


def check_backups(settings: Settings, now: float) -> Check:
    """The newest backup's age (a warning only: backups are the operator's schedule)."""
    folder = settings.backup.dir or default_backup_dir(settings.memory.db_path)
    backups = list_backups(folder)
    if not backups:
        return Check("backups", "warn", f"no backups in {folder}; schedule `solace backup`")
    age = now - backups[-1].stat().st_mtime
    status: Status = "warn" if age > STALE_BACKUP_SECONDS else "ok"
    return Check("backups", status, f"{len(backups)} in {folder}, newest {age / 3600:.1f} h old")


def check_model(settings: Settings) -> Check:
    """The configured backend is reachable (server) or its files are present (local GGUF)."""
    backend = settings.model.backend
    if backend == "openai":
        return _check_openai(settings)
    if backend == "llama-cpp":
        return _check_gguf(settings)
    if backend in ("llama-server", "auto"):  # auto: what `solace serve` runs
        return _check_llama_server(settings)
    return Check("model", "warn", f"backend {backend!r} is for tests: it does not answer people")


def _check_llama_server(settings: Settings) -> Check:
    """The GGUF files, and a llama-server binary that runs (else the embedded fallback)."""
    from bot.backends.llama_server_command import binary_version, cache_link, find_binary
    from bot.errors import ConfigError

    files = _check_gguf(settings)
    if files.status == "fail":
        return files
    detail = files.detail.removeprefix("llama-cpp: ")
    binary = find_binary(settings.llama_server.binary)
    try:
        if binary is None:
            where = settings.llama_server.binary or f"{cache_link()} or PATH"
            raise ConfigError(f"no llama-server binary ({where}); run `make llama-server`")
        version = binary_version(binary)
    except ConfigError as exc:
        if settings.llama_server.missing_binary == "refuse":
            return Check("model", "fail", str(exc))
        return Check("model", "warn", f"{exc}: `solace serve` falls back to the embedded model")
    return Check("model", "ok", f"llama-server {binary} ({version}); {detail}")


def _check_gguf(settings: Settings) -> Check:
    from bot.backends.model_files import default_adapter_path, embedded_model_path

    m = settings.model
    path = m.path or embedded_model_path()
    if path is None:
        return Check("model", "fail", "no model.path set and the embedded SmolLM2 is missing")
    files = [("model", Path(path))]
    if m.lora_path is not None:
        files.append(("LoRA adapter", Path(m.lora_path)))
    elif m.path is None and m.use_default_adapter and default_adapter_path() is not None:
        files.append(("default adapter", Path(str(default_adapter_path()))))
    for label, file in files:
        if not file.is_file():
            return Check("model", "fail", f"{label} file {file} does not exist")
        with file.open("rb") as handle:
            if handle.read(4) != GGUF_MAGIC:
                return Check("model", "fail", f"{label} file {file} is not a GGUF file")
    return Check("model", "ok", "llama-cpp: " + ", ".join(f"{lab} {f}" for lab, f in files))


def _check_openai(settings: Settings) -> Check:
    import httpx

    o = settings.openai
    url = o.base_url.rstrip("/") + "/models"
    headers = {}
    if settings.openai_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.openai_api_key.get_secret_value()}"
    try:
        response = httpx.get(url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        return Check("model", "fail", f"model server {url}: {type(exc).__name__}")
    if response.status_code != 200:
        return Check("model", "fail", f"model server {url}: HTTP {response.status_code}")
    try:
        ids = [str(item.get("id")) for item in response.json().get("data", [])]
    except ValueError:
        return Check("model", "fail", f"model server {url}: the answer is not JSON")
    if o.model not in ids and not any(i.endswith("/" + o.model) for i in ids):
        listed = ", ".join(ids[:5]) or "none"
        return Check("model", "warn", f"{url} is up but serves {listed}, not {o.model!r}")
    return Check("model", "ok", f"model server {url} serves {o.model!r}")


def check_semantic(settings: Settings) -> Check:
    """The crisis screen's semantic layer: off by configuration, or its files load and embed.

    "warn", never "fail", when it cannot run: the rules keep screening every message."""
    if not settings.safety.semantic:
        return Check("semantic", "warn", "off in settings (safety.semantic = false): rules only")
    from bot.safety.semantic import build_semantic

    started = time.perf_counter()
    semantic, status = build_semantic(
        settings.safety.encoder_path, settings.safety.semantic_classifier_path, log=False
    )
    if semantic is None:
        return Check("semantic", "warn", f"{status}; the crisis rules run alone")
    if semantic.score("a short health check") is None or semantic.status != "ready":
        return Check("semantic", "warn", f"{semantic.status}; the crisis rules run alone")
    elapsed = time.perf_counter() - started
    return Check("semantic", "ok", f"encoder and classifier load and score ({elapsed:.2f}s)")


def check_generate(settings: Settings) -> Check:
    """Load the backend and generate a few tokens (slow with a local model: on demand only)."""
    from bot.backends import GenOptions, build_backend
    from bot.errors import SolaceError

    started = time.perf_counter()
    try:
        backend = build_backend(settings)
        options = GenOptions(max_new_tokens=4, temperature=0.0)
        text = "".join(backend.generate([{"role": "user", "content": "Hello"}], options))
    except SolaceError as exc:
        return Check("generate", "fail", f"{settings.model.backend}: {exc}")
    took = time.perf_counter() - started
    status: Status = "ok" if text.strip() else "fail"
    return Check("generate", status, f"{len(text)} chars in {took:.2f} s")


def _token_check(platform: str, value: SecretStr | None, enabled: bool) -> Check:
    name = f"{platform}_token"
    if value is None:
        if enabled:
            return Check(name, "fail", "the adapter is enabled but the token is not set")
        return Check(name, "ok", "adapter disabled, no token set")
    if not token_shape_ok(platform, value):
        return Check(name, "fail", "the token is set but does not have the expected shape")
    return Check(name, "ok", "token set, shape ok" + ("" if enabled else " (adapter disabled)"))


def check_secrets(settings: Settings) -> list[Check]:
    """Platform tokens' shapes and the pseudonym secret's presence; values are never shown."""
    checks = [
        _token_check("telegram", settings.telegram_token, settings.telegram.enabled),
        _token_check("discord", settings.discord_token, settings.discord.enabled),
    ]
    secret = settings.pseudonym_secret
    serving = settings.telegram.enabled or settings.discord.enabled
    if secret is None:
        status: Status = "fail" if serving else "warn"
        checks.append(Check("pseudonym_secret", status, "SOLACE_PSEUDONYM_SECRET is not set"))
    elif len(secret.get_secret_value()) < MIN_SECRET_CHARS:
        checks.append(
            Check("pseudonym_secret", "fail", f"shorter than {MIN_SECRET_CHARS} characters")
        )
    else:
        checks.append(_secret_pinned(settings, secret.get_secret_value().encode()))
    return checks


def _secret_pinned(settings: Settings, secret: bytes) -> Check:
    """The secret against the database's key check (a changed secret strands everyone)."""
    from bot.errors import StorageError
    from bot.memory.keys import file_secret_matches

    path = Path(settings.memory.db_path).expanduser()
    if not path.is_file():
        return Check("pseudonym_secret", "ok", "set (no database yet)")
    try:
        matches = file_secret_matches(path, secret)
    except StorageError as exc:
        return Check("pseudonym_secret", "fail", str(exc))
    if matches is False:
        return Check(
            "pseudonym_secret",
            "fail",
            "set, but not the secret this database was written with (key check differs); "
            "restore the original or run `solace memory rotate-secret`",
        )
    if matches is None:
        return Check("pseudonym_secret", "ok", "set (the database pins it when the bot starts)")
    return Check("pseudonym_secret", "ok", "set, matches the database's key check")


def run_checks(
    settings: Settings, *, generate: bool = False, clock: Callable[[], float] = time.time
) -> list[Check]:
    """Every check, in a stable order (generation last, only when asked)."""
    checks = [
        check_database(settings),
        check_disk(settings),
        check_backups(settings, clock()),
        check_model(settings),
        check_semantic(settings),
        *check_secrets(settings),
    ]
    platforms = [check_telegram_webhook(settings, clock()), check_discord_commands(settings)]
    checks += [c for c in platforms if c is not None]
    if generate:
        checks.append(check_generate(settings))
    return checks


def healthy(checks: list[Check]) -> bool:
    """True when no check failed (warnings do not make a deployment unhealthy)."""
    return all(c.status != "fail" for c in checks)


def as_json(checks: list[Check]) -> dict[str, Any]:
    """The JSON document `solace health --json` prints."""
    return {"ok": healthy(checks), "checks": [asdict(c) for c in checks]}
