"""Per-user memory in one SQLite file (WAL), keyed by a pseudonym, with a right to be forgotten.

All SQL of the bot lives here. The schema is built by append-only migrations
(`sqlite_utils.Migrations("solace")`, bundled with sqlite-utils 4): never edit a migration that
has shipped, add a new one. Every table that holds per-user rows has a `user_key` column, so
`forget_user` can delete from all of them — including tables other areas add later.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

from bot.errors import ConfigError, StorageError

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
BUSY_TIMEOUT_MS = 5_000
SECRET_FILE_NAME = "pseudonym.secret"
SECRET_BYTES = 32

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
def m003_risk_state(db: Database) -> None:
    """Conversation-level crisis risk per person (issue 17): a decaying score, no text."""
    db.table("risk_state").create(
        {"user_key": str, "score": float, "updated_at": float, "raised": int, "checkin": str},
        pk="user_key",
        not_null={"user_key", "score", "updated_at"},
    )


@dataclass(frozen=True, slots=True)
class StoredTurn:
    """One stored utterance, as the context builder needs it."""

    id: int
    conversation_id: str
    role: str
    text: str
    compressed: str | None
    representation: str | None
    tokens: int
    compressed_tokens: int | None
    flagged: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class UserRecord:
    """Per-user state: current conversation, consent notice, country for crisis resources."""

    user_key: str
    platform: str
    conversation_id: str
    notice_seen_at: float | None
    country: str | None


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


class MemoryStore:
    """Small verbs over the SQLite store. Build with `open_memory()` or from a `Database`.

    Args:
        db: an open sqlite-utils Database (a file for WAL; `memory=True` works for quick tests).
        secret: the key for user pseudonyms (HMAC-SHA256 over platform and user id).
        clock: seconds since the epoch; injected so tests are deterministic.
        new_id: conversation-id generator.
    """

    def __init__(
        self,
        db: Database,
        secret: bytes,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        if len(secret) < 16:
            raise ConfigError("the pseudonym secret must be at least 16 bytes")
        self.db = db
        self._secret = secret
        self._clock = clock
        self._new_id = new_id
        try:
            db.execute("PRAGMA secure_delete = ON")  # deleted rows are overwritten, not unlinked
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            migrations.apply(db)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open or migrate the database: {exc}") from exc

    def pseudonym(self, platform: str, user_id: str) -> str:
        """The stable, keyed pseudonym of a platform user (hex HMAC-SHA256)."""
        message = f"{platform}\x00{user_id}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def derive_key(self, label: bytes) -> bytes:
        """A key for another purpose (e.g. log ids), derived from the secret: HMAC(secret, label)."""
        return hmac.new(self._secret, label, hashlib.sha256).digest()

    def get_user(self, user_key: str) -> UserRecord | None:
        """The user's row, or None if we have never stored anything for them."""
        rows = list(self.db.query("SELECT * FROM users WHERE user_key = ?", [user_key]))
        if not rows:
            return None
        row = rows[0]
        return UserRecord(
            row["user_key"],
            row["platform"],
            row["conversation_id"],
            row["notice_seen_at"],
            row["country"],
        )

    def ensure_user(self, user_key: str, platform: str) -> UserRecord:
        """The user's row, created (with a fresh conversation) if missing."""
        user = self.get_user(user_key)
        if user is not None:
            return user
        now = self._clock()
        row = {
            "user_key": user_key,
            "platform": platform,
            "conversation_id": self._new_id(),
            "notice_seen_at": None,
            "country": None,
            "created_at": now,
            "last_seen_at": now,
        }
        self._write(
            "INSERT OR IGNORE INTO users ({}) VALUES ({})".format(
                ", ".join(row), ", ".join("?" * len(row))
            ),
            list(row.values()),
        )
        user = self.get_user(user_key)
        if user is None:  # pragma: no cover - INSERT OR IGNORE always leaves a row
            raise StorageError("user row vanished after insert")
        return user

    def mark_notice_seen(self, user_key: str, platform: str) -> None:
        """Record that the user has been shown the privacy notice."""
        self.ensure_user(user_key, platform)
        self._write(
            "UPDATE users SET notice_seen_at = ? WHERE user_key = ?", [self._clock(), user_key]
        )

    def set_country(self, user_key: str, platform: str, country: str | None) -> None:
        """Remember the user's country for localised crisis resources."""
        self.ensure_user(user_key, platform)
        self._write("UPDATE users SET country = ? WHERE user_key = ?", [country, user_key])

    def set_review_consent(self, user_key: str, platform: str, on: bool) -> None:
        """Record (`/review on`) or withdraw (`/review off`) consent to moderator review.

        Withdrawing also deletes the person's consent-based audit copies (and their judge
        scores); crisis-flagged conversations stay reviewable, as the notice says.
        """
        self.ensure_user(user_key, platform)
        with self._atomic():
            if on:  # turning it on again keeps the original time
                self.db.execute(
                    "UPDATE users SET review_consent_at = COALESCE(review_consent_at, ?) "
                    "WHERE user_key = ?",
                    [self._clock(), user_key],
                )
                return
            self.db.execute(
                "UPDATE users SET review_consent_at = NULL WHERE user_key = ?", [user_key]
            )
            consent_only = (
                "SELECT conversation_id FROM audit_conversations "
                "WHERE user_key = ? AND basis = 'consent'"
            )
            for table in ("audit_turns", "audit_judgements", "audit_conversations"):
                self.db.execute(
                    f"DELETE FROM {table} WHERE user_key = ? AND conversation_id IN "
                    f"({consent_only})",
                    [user_key, user_key],
                )

    def review_consent(self, user_key: str) -> bool:
        """True when the person has turned `/review on`."""
        row = self.db.execute(
            "SELECT review_consent_at FROM users WHERE user_key = ?", [user_key]
        ).fetchone()
        return row is not None and row[0] is not None

    def add_turn(
        self,
        user_key: str,
        *,
        platform: str,
        role: str,
        text: str,
        tokens: int,
        compressed: str | None = None,
        representation: str | None = None,
        compressed_tokens: int | None = None,
        flagged: bool = False,
    ) -> int:
        """Store one utterance in the user's current conversation; returns its id (committed)."""
        if role not in ("user", "assistant"):
            raise ValueError(f"unknown role {role!r}")
        user = self.ensure_user(user_key, platform)
        now = self._clock()
        row = {
            "user_key": user_key,
            "conversation_id": user.conversation_id,
            "platform": platform,
            "role": role,
            "text": text,
            "compressed": compressed,
            "representation": representation,
            "tokens": tokens,
            "compressed_tokens": compressed_tokens,
            "flagged": int(flagged),
            "created_at": now,
        }
        with self._atomic():
            cursor = self.db.execute(
                "INSERT INTO turns ({}) VALUES ({})".format(
                    ", ".join(row), ", ".join("?" * len(row))
                ),
                list(row.values()),
            )
            self.db.execute("UPDATE users SET last_seen_at = ? WHERE user_key = ?", [now, user_key])
        return int(cursor.lastrowid or 0)

    def recent_turns(
        self, user_key: str, limit: int, *, conversation_id: str | None = None
    ) -> list[StoredTurn]:
        """The newest `limit` turns of a conversation (default: the current one), oldest first."""
        if conversation_id is None:
            user = self.get_user(user_key)
            if user is None:
                return []
            conversation_id = user.conversation_id
        rows = self.db.query(
            "SELECT * FROM turns WHERE user_key = ? AND conversation_id = ? "
            "ORDER BY id DESC LIMIT ?",
            [user_key, conversation_id, limit],
        )
        turns = [
            StoredTurn(
                r["id"],
                r["conversation_id"],
                r["role"],
                r["text"],
                r["compressed"],
                r["representation"],
                r["tokens"],
                r["compressed_tokens"],
                bool(r["flagged"]),
                r["created_at"],
            )
            for r in rows
        ]
        turns.reverse()
        return turns

    def new_conversation(self, user_key: str, platform: str = "unknown") -> str:
        """Start a fresh conversation; earlier ones stay stored for `/export` until purged."""
        self.ensure_user(user_key, platform)
        conversation_id = self._new_id()
        self._write(
            "UPDATE users SET conversation_id = ? WHERE user_key = ?", [conversation_id, user_key]
        )
        return conversation_id

    def add_event(
        self, user_key: str, kind: str, category: str | None, detail: str | None = None
    ) -> None:
        """Record a moderator-facing event (crisis, guard, backend_error); never message text."""
        user = self.get_user(user_key)
        row = [user_key, user.conversation_id if user else None, kind, category, detail]
        self._write(
            "INSERT INTO events (user_key, conversation_id, kind, category, detail, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [*row, self._clock()],
        )

    def get_risk(self, user_key: str) -> dict[str, Any] | None:
        """The person's stored risk state: score, updated_at, raised, checkin (the category of
        a check-in waiting for an answer, or None); None when nothing is stored."""
        rows = list(self.db.query("SELECT * FROM risk_state WHERE user_key = ?", [user_key]))
        if not rows:
            return None
        row = rows[0]
        return {
            "score": float(row["score"]),
            "updated_at": float(row["updated_at"]),
            "raised": bool(row["raised"]),
            "checkin": row["checkin"],
        }

    def set_risk(
        self, user_key: str, score: float, updated_at: float, raised: bool, checkin: str | None
    ) -> None:
        """Store the person's risk state (one row; nothing to keep deletes it)."""
        if score <= 0.0 and checkin is None:
            self._write("DELETE FROM risk_state WHERE user_key = ?", [user_key])
            return
        self._write(
            "INSERT INTO risk_state (user_key, score, updated_at, raised, checkin) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(user_key) DO UPDATE SET score = excluded.score, "
            "updated_at = excluded.updated_at, raised = excluded.raised, "
            "checkin = excluded.checkin",
            [user_key, score, updated_at, int(raised), checkin],
        )

    def forget_user(self, user_key: str) -> dict[str, int]:
        """Delete every row of the user from every per-user table, then truncate the WAL."""
        deleted: dict[str, int] = {}
        with self._atomic():
            for table in self._user_tables():
                cursor = self.db.execute(f"DELETE FROM [{table}] WHERE user_key = ?", [user_key])
                deleted[table] = cursor.rowcount
        self.checkpoint()
        return deleted

    def export_user(self, user_key: str) -> dict[str, Any]:
        """Everything stored about the user, grouped by conversation (for `/export`)."""
        user = self.get_user(user_key)
        conversations: dict[str, list[dict[str, Any]]] = {}
        for row in self.db.query("SELECT * FROM turns WHERE user_key = ? ORDER BY id", [user_key]):
            conversations.setdefault(row["conversation_id"], []).append(
                {
                    "role": row["role"],
                    "text": row["text"],
                    "time": _iso(row["created_at"]),
                    "flagged": bool(row["flagged"]),
                }
            )
        events = [
            {"kind": r["kind"], "category": r["category"], "time": _iso(r["created_at"])}
            for r in self.db.query(
                "SELECT * FROM events WHERE user_key = ? ORDER BY id", [user_key]
            )
        ]
        return {
            "user": None
            if user is None
            else {
                **{k: v for k, v in asdict(user).items() if k != "notice_seen_at"},
                "notice_seen": _iso(user.notice_seen_at),
            },
            "conversations": [
                {
                    "id": cid,
                    "current": user is not None and cid == user.conversation_id,
                    "turns": turns,
                }
                for cid, turns in conversations.items()
            ],
            "events": events,
            "risk_state": self._export_risk(user_key),
        }

    def _export_risk(self, user_key: str) -> dict[str, Any] | None:
        risk = self.get_risk(user_key)
        if risk is None:
            return None
        return {
            "score": round(risk["score"], 3),
            "updated": _iso(risk["updated_at"]),
            "raised": risk["raised"],
            "checkin_waiting": risk["checkin"],
        }

    def purge_older_than(self, days: int, now: float | None = None) -> int:
        """Delete turns and events older than `days`, and users idle since then; returns rows."""
        cutoff = (self._clock() if now is None else now) - days * SECONDS_PER_DAY
        total = 0
        with self._atomic():
            for table in ("turns", "events"):
                cursor = self.db.execute(f"DELETE FROM {table} WHERE created_at < ?", [cutoff])
                total += cursor.rowcount
            cursor = self.db.execute("DELETE FROM risk_state WHERE updated_at < ?", [cutoff])
            total += cursor.rowcount
            cursor = self.db.execute(
                "DELETE FROM users WHERE last_seen_at < ? AND NOT EXISTS "
                "(SELECT 1 FROM turns WHERE turns.user_key = users.user_key)",
                [cutoff],
            )
            total += cursor.rowcount
        self.checkpoint()
        return total

    def stats(self) -> dict[str, int]:
        """Row counts only (no content): users, turns, flagged turns, events by kind."""
        counts = {
            "users": self._count("SELECT COUNT(*) FROM users"),
            "turns": self._count("SELECT COUNT(*) FROM turns"),
            "flagged_turns": self._count("SELECT COUNT(*) FROM turns WHERE flagged = 1"),
        }
        for row in self.db.query("SELECT kind, COUNT(*) AS n FROM events GROUP BY kind"):
            counts[f"events_{row['kind']}"] = row["n"]
        return counts

    def checkpoint(self) -> None:
        """Copy the WAL into the main file and truncate it, so deleted bytes leave the WAL."""
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            return
        busy, _, _ = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            logger.warning("WAL checkpoint was blocked by a reader; it will complete later")

    def _user_tables(self) -> list[str]:
        return [
            name
            for name in self.db.table_names()
            if "user_key" in {column.name for column in self.db.table(name).columns}
        ]

    def _count(self, sql: str) -> int:
        return int(self.db.execute(sql).fetchone()[0])

    def _atomic(self) -> Any:
        return self.db.atomic()

    def _write(self, sql: str, params: list[Any]) -> None:
        with self._atomic():
            self.db.execute(sql, params)


def open_memory(
    path: Path,
    secret: bytes,
    *,
    clock: Callable[[], float] = time.time,
) -> MemoryStore:
    """Open (creating if needed) the database file in WAL mode and apply migrations.

    Raises StorageError naming the file when it cannot be created, read or migrated.
    """
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        existed = path.exists()
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        if not existed:
            os.chmod(path, 0o600)  # SQLite gives the -wal/-shm files the same mode
        conn.execute("PRAGMA schema_version").fetchone()  # fails here if it is not a database
        db = Database(conn)
        db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; commits skip the fsync
    except (OSError, sqlite3.DatabaseError) as exc:
        raise StorageError(f"cannot open the database {path}: {exc}") from exc
    try:
        return MemoryStore(db, secret, clock=clock)
    except StorageError as exc:
        raise StorageError(f"{path}: {exc}") from exc


def migrate_database(path: Path) -> tuple[list[str], list[str]]:
    """Apply pending migrations to the file; returns (newly applied, all applied) names."""
    path = Path(path).expanduser()
    if not path.parent.is_dir():
        raise StorageError(f"the directory of {path} does not exist")
    try:
        with Database(path) as db:
            db.enable_wal()
            pending = [m.name for m in migrations.pending(db)]
            migrations.apply(db)
            applied = [m.name for m in migrations.applied(db)]
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot migrate {path}: {exc}") from exc
    return pending, applied


def resolve_secret(secret_env: str | None, db_path: Path, *, allow_file: bool) -> bytes:
    """The pseudonym key: SOLACE_PSEUDONYM_SECRET, else (dev only) a file next to the database.

    Args:
        secret_env: the value of SOLACE_PSEUDONYM_SECRET (from Settings), or None.
        db_path: the database file; the generated secret lives beside it as `pseudonym.secret`.
        allow_file: True for `solace chat` on a developer machine; servers must set the env var.
    """
    if secret_env:
        if len(secret_env.encode()) < 16:
            raise ConfigError("SOLACE_PSEUDONYM_SECRET must be at least 16 characters")
        return secret_env.encode()
    if not allow_file:
        raise ConfigError(
            "SOLACE_PSEUDONYM_SECRET is not set; generate one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'` and keep it safe "
            "(changing it makes every stored user unreachable)"
        )
    secret_path = Path(db_path).expanduser().parent / SECRET_FILE_NAME
    try:
        return _read_or_create_secret(secret_path)
    except OSError as exc:
        raise ConfigError(f"cannot read or create the secret file {secret_path}: {exc}") from exc


def _read_or_create_secret(secret_path: Path) -> bytes:
    if secret_path.is_file():
        value = secret_path.read_text().strip()
        if len(value) < 32:
            raise ConfigError(f"{secret_path} is too short; delete it to generate a new one")
        return value.encode()
    secret_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    value = secrets.token_hex(SECRET_BYTES)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    logger.warning("generated a pseudonym secret in %s (mode 0600)", secret_path)
    return value.encode()
