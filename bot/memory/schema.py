"""The memory database's schema and its one rule for writing.

The schema is built by append-only migrations (`sqlite_utils.Migrations("solace")`, bundled with
sqlite-utils 4): never edit a migration that has shipped, add a new one. Every table that holds
per-user rows has a `user_key` column, so `/forget` (and a secret rotation) reach all of them,
including tables other areas add later.

Every write transaction starts with `BEGIN IMMEDIATE` (`write_transaction`): it takes the write
lock up front, so SQLite's busy timeout applies while another connection writes. A deferred
transaction that reads first and upgrades later fails at once with "database is locked" when
another writer commits in between (issue 15) - the busy handler never runs for that upgrade.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from sqlite_utils import Database, Migrations

from bot.errors import StorageError

PRIVATE_SCOPE = "private"
GROUP_SCOPE = "group"
CHECKPOINT_FIRST_PAUSE_SECONDS = 0.05
CHECKPOINT_MAX_PAUSE_SECONDS = 2.0

migrations = Migrations("solace")


@migrations()
def m001_initial(db: Database) -> None:
    """Users, turns and events."""
    db.table("users").create(
        {
            "user_key": str,
            "platform": str,
            "conversation_id": str,
            "notice_seen_at": float,
            "country": str,
            "created_at": float,
            "last_seen_at": float,
        },
        pk="user_key",
    )
    db.table("turns").create(
        {
            "id": int,
            "user_key": str,
            "conversation_id": str,
            "platform": str,
            "role": str,
            "text": str,
            "compressed": str,
            "representation": str,
            "tokens": int,
            "compressed_tokens": int,
            "flagged": int,
            "created_at": float,
        },
        pk="id",
        not_null={"user_key", "conversation_id", "role", "text", "created_at"},
    )
    db.table("turns").create_index(["user_key", "conversation_id", "id"])
    db.table("turns").create_index(["created_at"])
    db.table("events").create(
        {
            "id": int,
            "user_key": str,
            "conversation_id": str,
            "kind": str,
            "category": str,
            "detail": str,
            "created_at": float,
        },
        pk="id",
        not_null={"user_key", "kind", "created_at"},
    )
    db.table("events").create_index(["user_key"])
    db.table("events").create_index(["created_at"])


@migrations()
def m002_audits(db: Database) -> None:
    """Review consent, the audit store, and scheduled-job state (docs/audits.md)."""
    db.table("users").add_column("review_consent_at", float)
    db.table("audit_conversations").create(
        {"conversation_id": str, "user_key": str, "platform": str, "basis": str,
         "first_at": float, "last_at": float, "turns": int, "chars": int, "snapshot_at": float},
        pk="conversation_id", not_null={"user_key", "basis"},
    )  # fmt: skip
    db.table("audit_turns").create(
        {"id": int, "user_key": str, "conversation_id": str, "turn_id": int, "role": str,
         "text": str, "redactions": int, "flagged": int, "created_at": float,
         "snapshot_at": float},
        pk="id", not_null={"user_key", "conversation_id", "turn_id", "created_at"},
    )  # fmt: skip
    db.table("audit_toxicity").create(
        {"id": int, "user_key": str, "conversation_id": str, "turn_id": int, "role": str,
         "created_at": float, "scorer": str, "toxicity": float, "severe_toxicity": float,
         "identity_attack": float, "insult": float, "profanity": float, "threat": float,
         "max_attribute": str, "max_score": float, "scored_at": float},
        pk="id", not_null={"user_key", "turn_id", "created_at"},
    )  # fmt: skip
    db.table("audit_judgements").create(
        {"id": int, "user_key": str, "conversation_id": str, "judge_model": str,
         "judged_at": float, "turns": int, "stratum": int, "samples": int, "errors": int,
         "engagement": float, "comforting": float, "appropriateness": float,
         "suggestion": float, "engagement_std": float, "comforting_std": float,
         "appropriateness_std": float, "suggestion_std": float},
        pk="id", not_null={"user_key", "conversation_id", "judged_at"},
    )  # fmt: skip
    db.table("job_state").create(
        {"job": str, "last_success_at": float, "last_started_at": float, "cursor": str,
         "failures": int, "last_error": str, "lease_owner": str, "lease_until": float},
        pk="job",
    )  # fmt: skip
    db.table("job_runs").create(
        {"id": int, "job": str, "started_at": float, "finished_at": float, "ok": int,
         "items": int, "skipped": int, "detail": str, "error": str},
        pk="id", not_null={"job", "started_at"},
    )  # fmt: skip
    for table, columns in (
        ("audit_conversations", ["user_key"]), ("audit_conversations", ["snapshot_at"]),
        ("audit_turns", ["turn_id", "created_at"]), ("audit_turns", ["conversation_id"]),
        ("audit_turns", ["user_key"]), ("audit_turns", ["created_at"]),
        ("audit_toxicity", ["turn_id", "created_at"]), ("audit_toxicity", ["user_key"]),
        ("audit_toxicity", ["created_at"]), ("audit_judgements", ["conversation_id"]),
        ("audit_judgements", ["user_key"]), ("audit_judgements", ["judged_at"]),
        ("job_runs", ["started_at"]),
    ):  # fmt: skip
        unique = columns == ["turn_id", "created_at"] or (
            table == "audit_judgements" and columns == ["conversation_id"]
        )
        db.table(table).create_index(columns, unique=unique)
    db.table("events").create_index(["kind", "conversation_id"])


@migrations()
def m003_chat_scopes_and_key_check(db: Database) -> None:
    """Per-chat conversations and the pseudonym secret's key check (issue 15).

    `chat_scopes` holds a person's current conversation in each group or server channel, under a
    keyed hash of (platform, chat, person) - never the chat's id. The private conversation stays
    `users.conversation_id`. `turns.scope` says which kind a turn was written in. `secret_check`
    holds one row: an HMAC of a fixed label under the secret (never the secret), and the
    retired secrets a rotation chained under the current one, encrypted with it.
    """
    db.table("chat_scopes").create(
        {"user_key": str, "scope_key": str, "conversation_id": str, "created_at": float,
         "last_seen_at": float},
        pk=("user_key", "scope_key"), not_null={"conversation_id"},
    )  # fmt: skip
    db.table("chat_scopes").create_index(["conversation_id"])
    db.table("turns").add_column("scope", str)
    db.execute("UPDATE turns SET scope = ?", [PRIVATE_SCOPE])
    db.table("secret_check").create(
        {"id": int, "key_check": str, "retired": str, "created_at": float, "rotated_at": float},
        pk="id", not_null={"key_check"},
    )  # fmt: skip


@migrations()
def m004_telegram_update_claims(db: Database) -> None:
    """Telegram updates claimed by a bot process (webhook mode; docs/platforms.md, issue 20).

    One row per update_id, inserted with INSERT OR IGNORE before the update is handled, so two
    processes behind one webhook URL never answer the same update twice. `user_key` (the
    sender's pseudonym) is kept only while the update is being handled - it orders one person's
    updates across processes - and set to NULL when done; rows go after a day (Telegram retries
    an update for at most that long).
    """
    db.table("telegram_updates").create(
        {"update_id": int, "user_key": str, "claimed_by": str, "claimed_at": float,
         "done_at": float},
        pk="update_id", not_null={"claimed_by", "claimed_at"},
    )  # fmt: skip
    db.table("telegram_updates").create_index(["user_key", "update_id"])
    db.table("telegram_updates").create_index(["claimed_at"])


@migrations()
def m005_risk_state(db: Database) -> None:
    """Conversation-level crisis risk per person (issue 17): numbers and a category, no text.

    One row per person, across all their chats: a decaying `score` (`bot.safety.context`),
    whether it is `raised`, and a check-in waiting for an answer (`checkin`: the category it
    asked about; `checkin_conversation`: the conversation it was asked in, so only an answer
    there counts). Erased by /forget like every table with a `user_key`.
    """
    db.table("risk_state").create(
        {"user_key": str, "score": float, "updated_at": float, "raised": int, "checkin": str,
         "checkin_conversation": str},
        pk="user_key", not_null={"score", "updated_at"},
    )  # fmt: skip
    db.table("risk_state").create_index(["updated_at"])


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction that holds the write lock from its first statement.

    Raises StorageError when the lock cannot be had within the busy timeout (nothing written).
    Inside an already open transaction it nests as a savepoint.
    """
    if conn.in_transaction:
        name = f"solace_{secrets.token_hex(8)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        conn.execute(f"RELEASE SAVEPOINT {name}")
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise StorageError(f"the database is busy: {exc}") from exc
    try:
        yield conn
    except BaseException as exc:
        if conn.in_transaction:
            conn.rollback()
        if isinstance(exc, sqlite3.OperationalError):  # e.g. disk full, I/O error
            raise StorageError(f"the write failed: {exc}") from exc
        raise
    try:
        conn.commit()
    except sqlite3.OperationalError as exc:
        if conn.in_transaction:
            conn.rollback()
        raise StorageError(f"the commit failed: {exc}") from exc


def user_tables(conn: sqlite3.Connection) -> list[str]:
    """Every table with a `user_key` column: the ones /forget and a rotation must cover."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return [
        name
        for name in names
        if any(col[1] == "user_key" for col in conn.execute(f"PRAGMA table_info([{name}])"))
    ]


def truncate_wal(conn: sqlite3.Connection, *, deadline_s: float) -> bool:
    """Checkpoint the WAL into the main file and truncate it to zero bytes; True when done.

    A reader still using an older snapshot blocks the TRUNCATE checkpoint (SQLite then waits up
    to the connection's busy timeout per try); it is retried with growing pauses until
    `deadline_s` seconds have passed. Until it succeeds, the WAL may still hold deleted text.
    """
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        return True  # rollback journal: the delete itself rewrote the pages in place
    give_up = time.monotonic() + deadline_s
    pause = CHECKPOINT_FIRST_PAUSE_SECONDS
    while True:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if not busy:
            return True
        if time.monotonic() + pause > give_up:
            return False
        time.sleep(pause)
        pause = min(pause * 2, CHECKPOINT_MAX_PAUSE_SECONDS)


# Idle rows without turns (the memory purge and the audit retention job both delete them).
IDLE_SCOPES_SQL = (
    "DELETE FROM chat_scopes WHERE last_seen_at < ? AND NOT EXISTS (SELECT 1 FROM turns "
    "WHERE turns.user_key = chat_scopes.user_key AND "
    "turns.conversation_id = chat_scopes.conversation_id)"
)
IDLE_USERS_SQL = (
    "DELETE FROM users WHERE last_seen_at < ? AND NOT EXISTS "
    "(SELECT 1 FROM turns WHERE turns.user_key = users.user_key)"
)


def database_path(db: Database) -> Path | None:
    """The file behind the database; None for an in-memory one."""
    for row in db.execute("PRAGMA database_list").fetchall():
        if row[1] == "main" and row[2]:
            return Path(row[2])
    return None
