"""The console's tables and accounts: migrations, connections, logins, rate limits, audit log.

Accounts and logins are in `bot.web.auth`. The web tables live in the bot's own SQLite file,
built by their own append-only migration set (`Migrations("solace-web")`, applied by
`migrate_web`, which every `solace web` command, `solace eval human` and `solace migrate` run),
so they never collide with the memory schema's. Tables that hold rows about a bot user
(`web_queue`, `web_notes`, `web_labels`) have a `user_key` column: `MemoryStore.forget_user`
enumerates every such table, so `/forget` erases them too. Accounts, logins and the audit log
are about staff; studies hold raters' own chats and data-set dialogues, never a bot user's words.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

from bot.errors import StorageError

BUSY_TIMEOUT_MS = 5_000
AUDIT_TARGET_CHARS = 200

web_migrations = Migrations("solace-web")


@web_migrations()
def w001_console(db: Database) -> None:
    """Accounts, logins, audit log, moderation state, studies (docs/web.md)."""
    for sql in SCHEMA_W001:
        db.execute(sql)


SCHEMA_W001 = (
    "CREATE TABLE web_keys (name TEXT PRIMARY KEY, value TEXT NOT NULL, created_at REAL)",
    "CREATE TABLE web_accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
    "role TEXT NOT NULL, password_hash TEXT NOT NULL, created_at REAL NOT NULL, "
    "disabled_at REAL, last_login_at REAL, password_changed_at REAL)",
    "CREATE TABLE web_logins (id INTEGER PRIMARY KEY, sid_hash TEXT NOT NULL UNIQUE, "
    "account_id INTEGER NOT NULL, created_at REAL NOT NULL, last_seen_at REAL, "
    "expires_at REAL NOT NULL, revoked_at REAL)",
    "CREATE TABLE web_login_attempts (id INTEGER PRIMARY KEY, name TEXT, address TEXT, "
    "at REAL NOT NULL, ok INTEGER NOT NULL)",
    "CREATE INDEX web_login_attempts_at ON web_login_attempts (at)",
    "CREATE TABLE web_audit (id INTEGER PRIMARY KEY, at REAL NOT NULL, account_id INTEGER, "
    "account TEXT, role TEXT, action TEXT NOT NULL, target TEXT, status INTEGER, address TEXT)",
    "CREATE INDEX web_audit_at ON web_audit (at)",
    "CREATE INDEX web_audit_target ON web_audit (target)",
    "CREATE TABLE web_queue (conversation_id TEXT PRIMARY KEY, user_key TEXT NOT NULL, "
    "state TEXT NOT NULL, claimed_by INTEGER, claimed_at REAL, reviewed_by INTEGER, "
    "reviewed_at REAL, escalated_by INTEGER, escalated_at REAL, updated_at REAL NOT NULL)",
    "CREATE INDEX web_queue_user ON web_queue (user_key)",
    "CREATE TABLE web_notes (id INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL, "
    "user_key TEXT NOT NULL, account_id INTEGER NOT NULL, kind TEXT NOT NULL, text TEXT, "
    "created_at REAL NOT NULL)",
    "CREATE INDEX web_notes_conversation ON web_notes (conversation_id)",
    "CREATE INDEX web_notes_user ON web_notes (user_key)",
    "CREATE TABLE web_labels (id INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL, "
    "user_key TEXT NOT NULL, turn_id INTEGER NOT NULL, decision TEXT NOT NULL, "
    "level TEXT NOT NULL, category TEXT, style TEXT NOT NULL, account_id INTEGER NOT NULL, "
    "created_at REAL NOT NULL)",
    "CREATE INDEX web_labels_turn ON web_labels (turn_id)",
    "CREATE INDEX web_labels_user ON web_labels (user_key)",
    "CREATE TABLE web_studies (id INTEGER PRIMARY KEY, slug TEXT NOT NULL UNIQUE, "
    "kind TEXT NOT NULL, title TEXT NOT NULL, config TEXT NOT NULL, state TEXT NOT NULL, "
    "created_by INTEGER, created_at REAL NOT NULL)",
    "CREATE TABLE web_eval_sessions (id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL, "
    "account_id INTEGER NOT NULL, issue TEXT NOT NULL, model_order TEXT NOT NULL, "
    "position INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, finished_at REAL)",
    "CREATE INDEX web_eval_sessions_study ON web_eval_sessions (study_id, account_id)",
    "CREATE TABLE web_eval_turns (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL, "
    "model_index INTEGER NOT NULL, role TEXT NOT NULL, text TEXT NOT NULL, event TEXT, "
    "created_at REAL NOT NULL)",
    "CREATE INDEX web_eval_turns_session ON web_eval_turns (session_id, model_index, id)",
    "CREATE TABLE web_eval_answers (id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL, "
    "session_id INTEGER NOT NULL, account_id INTEGER NOT NULL, model_a INTEGER NOT NULL, "
    "model_b INTEGER NOT NULL, aspect TEXT NOT NULL, outcome TEXT NOT NULL, "
    "created_at REAL NOT NULL, UNIQUE (session_id, model_a, model_b, aspect))",
    "CREATE INDEX web_eval_answers_study ON web_eval_answers (study_id)",
    "CREATE TABLE web_rating_items (id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL, "
    "source TEXT NOT NULL, dialogue_id TEXT NOT NULL, dialogue TEXT NOT NULL, "
    "position INTEGER NOT NULL)",
    "CREATE INDEX web_rating_items_study ON web_rating_items (study_id, position)",
    "CREATE TABLE web_ratings (id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL, "
    "item_id INTEGER NOT NULL, account_id INTEGER NOT NULL, aspect TEXT NOT NULL, "
    "score INTEGER NOT NULL, created_at REAL NOT NULL, UNIQUE (item_id, account_id, aspect))",
    "CREATE INDEX web_ratings_study ON web_ratings (study_id)",
)


# --- connections -----------------------------------------------------------------------------


def migrate_web(path: Path) -> tuple[list[str], list[str]]:
    """Apply the memory schema's and then the console's pending migrations to the file.

    Returns (newly applied, all applied) names of the console's set.
    """
    from bot.memory.database import migrate_database

    migrate_database(path)
    try:
        with Database(path) as db:
            pending = [m.name for m in web_migrations.pending(db)]
            web_migrations.apply(db)
            applied = [m.name for m in web_migrations.applied(db)]
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot migrate {path}: {exc}") from exc
    return pending, applied


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the bot's database file (autocommit; writes use `transaction`)."""
    try:
        conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc
    return conn


@contextlib.contextmanager
def connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection for one block (one request or one thread)."""
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def signing_key(conn: sqlite3.Connection, now: float) -> str:
    """The cookie-signing key, made once and kept in the database (rotate: `solace web
    rotate-key`, which logs everyone out)."""
    row = conn.execute("SELECT value FROM web_keys WHERE name = 'session'").fetchone()
    if row is not None:
        return str(row[0])
    with transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO web_keys (name, value, created_at) VALUES ('session', ?, ?)",
            [secrets.token_hex(32), now],
        )
    return str(conn.execute("SELECT value FROM web_keys WHERE name = 'session'").fetchone()[0])


def rotate_signing_key(conn: sqlite3.Connection, now: float) -> None:
    """A new cookie-signing key; every login is revoked."""
    with transaction(conn):
        conn.execute("DELETE FROM web_keys WHERE name = 'session'")
        conn.execute("UPDATE web_logins SET revoked_at = ? WHERE revoked_at IS NULL", [now])
    signing_key(conn, now)


# --- the audit log ---------------------------------------------------------------------------


def audit(
    conn: sqlite3.Connection, now: float, account: Any, action: str,
    target: str | None, status: int, address: str,
) -> None:  # fmt: skip
    """One row per view or action: who, what, which conversation or study; never any text."""
    conn.execute(
        "INSERT INTO web_audit (at, account_id, account, role, action, target, status, address) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [now, account.id if account else None, account.name if account else None,
         account.role if account else None, action[:100],
         target[:AUDIT_TARGET_CHARS] if target else None, status, address[:64]],
    )  # fmt: skip


def audit_rows(
    conn: sqlite3.Connection,
    *,
    target: str | None = None,
    limit: int = 200,
    before: int | None = None,
) -> list[sqlite3.Row]:
    """Newest audit rows first (optionally for one target)."""
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    if target:
        where.append("target = ?")
        params.append(target)
    if before:
        where.append("id < ?")
        params.append(before)
    return conn.execute(
        f"SELECT * FROM web_audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
