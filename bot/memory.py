"""Per-user memory in one SQLite file (WAL), keyed by a pseudonym, with a right to be forgotten.

All SQL of the bot's conversations lives here; the schema is in `bot.memory_schema`, the
pseudonym secret (key check, rotation) in `bot.memory_keys`.

Conversations are per person **and per chat scope**: a person's private chat (a DM, the
console) is one scope, and each group or server channel they talk in is another, keyed by a
keyed hash of (platform, chat, person). A reply is built only from turns of its own scope, so a
group never sees what was said in private, and groups never see each other. Every scope lives
under the same `user_key`, so `/export` and `/forget` cover all of them.

Every write starts with `BEGIN IMMEDIATE` (`write_transaction`). `/forget` runs on a connection
of its own and reports truthfully (`bot.memory_erasure`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from bot.errors import ConfigError, StorageError
from bot.memory_erasure import (
    ERASE_CHECKPOINT_SECONDS,
    Erasure,
    checkpoint_now,
    erase_user,
    erasure_connection,
)
from bot.memory_keys import KeyRing, check_secret_shape, load_key_ring
from bot.memory_keys import resolve_secret as resolve_secret
from bot.memory_schema import (
    GROUP_SCOPE,
    PRIVATE_SCOPE,
    truncate_wal,
    write_transaction,
)
from bot.memory_schema import migrations as migrations

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
BUSY_TIMEOUT_MS = 5_000


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
class StoredRisk:
    """A person's conversation-level crisis risk (issue 17): numbers and a category, no text.

    Args:
        score: the decaying score at `updated_at` (`bot.safety_context.RiskState`).
        raised: whether the score was at or above the raised level then.
        checkin: the category a concern check-in asked about, while it waits for an answer.
        checkin_conversation: the conversation it was asked in (only an answer there counts).
    """

    score: float
    updated_at: float
    raised: bool
    checkin: str | None = None
    checkin_conversation: str | None = None


@dataclass(frozen=True, slots=True)
class UserRecord:
    """Per-user state: private conversation, consent notice, country for crisis resources."""

    user_key: str
    platform: str
    conversation_id: str
    notice_seen_at: float | None
    country: str | None


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def _turn(r: Any) -> StoredTurn:
    return StoredTurn(
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


class MemoryStore:
    """Small verbs over the SQLite store. Build with `open_memory()` or from a `Database`.

    Args:
        db: an open sqlite-utils Database (a file for WAL; `memory=True` works for quick tests).
        secret: the key for pseudonyms; the database pins it (another one is a ConfigError).
        clock: seconds since the epoch; injected so tests are deterministic.
        new_id: conversation-id generator.
        busy_timeout_s: how long a write waits for another connection's write lock.

    A `scope` argument is a group scope key from `scope_key()`; None means the private chat.
    """

    def __init__(
        self,
        db: Database,
        secret: bytes,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        busy_timeout_s: float = BUSY_TIMEOUT_MS / 1000,
    ) -> None:
        check_secret_shape(secret, "the pseudonym secret")
        self.db = db
        self._clock = clock
        self._new_id = new_id
        self._busy_timeout_s = busy_timeout_s
        try:
            db.execute("PRAGMA secure_delete = ON")  # deleted rows are overwritten, not unlinked
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            migrations.apply(db)
            self._keys: KeyRing = load_key_ring(db.conn, secret, clock)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open or migrate the database: {exc}") from exc
        self.path = _file_of(db)

    # --- keys -----------------------------------------------------------------------------

    def pseudonym(self, platform: str, user_id: str) -> str:
        """The stable, keyed pseudonym of a platform user (hex HMAC-SHA256)."""
        return self._keys.pseudonym(platform, user_id)

    def scope_key(self, platform: str, user_id: str, chat_id: str | None) -> str | None:
        """The person's key for a group chat or channel; None for a private chat."""
        if chat_id is None:
            return None
        return self._keys.scope_key(platform, user_id, chat_id)

    def derive_key(self, label: bytes) -> bytes:
        """A key for another purpose (e.g. log ids), derived from the current secret."""
        return self._keys.derive(label)

    # --- people ---------------------------------------------------------------------------

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
        """The user's row, created (with a fresh private conversation) if missing."""
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

        Consent covers the person's conversations in every scope. Withdrawing also deletes their
        consent-based audit copies (and judge scores); crisis-flagged conversations stay
        reviewable, as the notice says.
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

    # --- conversations --------------------------------------------------------------------

    def conversation_id(self, user_key: str, platform: str, scope: str | None = None) -> str:
        """The person's current conversation in `scope` (created, with the user, if missing)."""
        user = self.ensure_user(user_key, platform)
        if scope is None:
            return user.conversation_id
        found = self._scope_conversation(user_key, scope)
        if found is not None:
            return found
        now = self._clock()
        self._write(
            "INSERT OR IGNORE INTO chat_scopes (user_key, scope_key, conversation_id, "
            "created_at, last_seen_at) VALUES (?, ?, ?, ?, ?)",
            [user_key, scope, self._new_id(), now, now],
        )
        found = self._scope_conversation(user_key, scope)
        if found is None:  # pragma: no cover - INSERT OR IGNORE always leaves a row
            raise StorageError("chat scope row vanished after insert")
        return found

    def _scope_conversation(self, user_key: str, scope: str) -> str | None:
        row = self.db.execute(
            "SELECT conversation_id FROM chat_scopes WHERE user_key = ? AND scope_key = ?",
            [user_key, scope],
        ).fetchone()
        return None if row is None else str(row[0])

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
        scope: str | None = None,
    ) -> int:
        """Store one utterance in the person's current conversation of `scope`; returns its id."""
        if role not in ("user", "assistant"):
            raise ValueError(f"unknown role {role!r}")
        conversation = self.conversation_id(user_key, platform, scope)
        now = self._clock()
        row = {
            "user_key": user_key,
            "conversation_id": conversation,
            "platform": platform,
            "scope": PRIVATE_SCOPE if scope is None else GROUP_SCOPE,
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
            if scope is not None:
                self.db.execute(
                    "UPDATE chat_scopes SET last_seen_at = ? WHERE user_key = ? AND scope_key = ?",
                    [now, user_key, scope],
                )
        return int(cursor.lastrowid or 0)

    def recent_turns(
        self,
        user_key: str,
        limit: int,
        *,
        conversation_id: str | None = None,
        scope: str | None = None,
    ) -> list[StoredTurn]:
        """The newest `limit` turns of a conversation (default: the current one of `scope`),
        oldest first."""
        if conversation_id is None:
            if scope is None:
                user = self.get_user(user_key)
                conversation_id = None if user is None else user.conversation_id
            else:
                conversation_id = self._scope_conversation(user_key, scope)
            if conversation_id is None:
                return []
        rows = self.db.query(
            "SELECT * FROM turns WHERE user_key = ? AND conversation_id = ? "
            "ORDER BY id DESC LIMIT ?",
            [user_key, conversation_id, limit],
        )
        turns = [_turn(r) for r in rows]
        turns.reverse()
        return turns

    def new_conversation(
        self, user_key: str, platform: str = "unknown", scope: str | None = None
    ) -> str:
        """Start a fresh conversation in `scope`; earlier ones stay stored for `/export`."""
        self.conversation_id(user_key, platform, scope)  # the user (and scope) exist
        conversation_id = self._new_id()
        if scope is None:
            self._write(
                "UPDATE users SET conversation_id = ? WHERE user_key = ?",
                [conversation_id, user_key],
            )
        else:
            self._write(
                "UPDATE chat_scopes SET conversation_id = ? WHERE user_key = ? AND scope_key = ?",
                [conversation_id, user_key, scope],
            )
        return conversation_id

    def add_event(
        self,
        user_key: str,
        kind: str,
        category: str | None,
        detail: str | None = None,
        *,
        scope: str | None = None,
    ) -> None:
        """Record a moderator-facing event (crisis, guard, backend_error); never message text.

        The event belongs to the person's current conversation in `scope` (so a crisis in a
        group flags that group conversation, not their private one).
        """
        user = self.get_user(user_key)
        conversation = (
            None if user is None else self.conversation_id(user_key, user.platform, scope)
        )
        self._write(
            "INSERT INTO events (user_key, conversation_id, kind, category, detail, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [user_key, conversation, kind, category, detail, self._clock()],
        )

    def get_risk(self, user_key: str) -> StoredRisk | None:
        """The person's stored conversation-level risk (one row across all chats), or None."""
        rows = list(self.db.query("SELECT * FROM risk_state WHERE user_key = ?", [user_key]))
        if not rows:
            return None
        r = rows[0]
        return StoredRisk(
            float(r["score"]),
            float(r["updated_at"]),
            bool(r["raised"]),
            r["checkin"],
            r["checkin_conversation"],
        )

    def set_risk(self, user_key: str, risk: StoredRisk | None) -> None:
        """Store the person's risk state; None deletes it (nothing left worth keeping)."""
        if risk is None:
            self._write("DELETE FROM risk_state WHERE user_key = ?", [user_key])
            return
        self._write(
            "INSERT INTO risk_state (user_key, score, updated_at, raised, checkin, "
            "checkin_conversation) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(user_key) DO UPDATE "
            "SET score = excluded.score, updated_at = excluded.updated_at, "
            "raised = excluded.raised, checkin = excluded.checkin, "
            "checkin_conversation = excluded.checkin_conversation",
            [user_key, risk.score, risk.updated_at, int(risk.raised), risk.checkin,
             risk.checkin_conversation],
        )  # fmt: skip

    # --- erasure, export, retention -------------------------------------------------------

    def forget_user(
        self, user_key: str, *, checkpoint_seconds: float = ERASE_CHECKPOINT_SECONDS
    ) -> Erasure:
        """Delete every row of the user from every per-user table, then truncate the WAL.

        Runs on a connection of its own, so it is safe in a worker thread for a file database
        (`bot.memory_erasure`). StorageError: the lock stayed busy and nothing was erased.
        `Erasure.wal_clean` False: erased, but a reader still blocks truncating the WAL.
        """
        with self._own_connection() as conn:
            return erase_user(conn, user_key, checkpoint_seconds)

    def finish_erasure(self, seconds: float) -> bool:
        """Retry truncating the WAL for up to `seconds`; True once it is empty."""
        with self._own_connection() as conn:
            return checkpoint_now(conn, seconds)

    @contextlib.contextmanager
    def _own_connection(self) -> Iterator[sqlite3.Connection]:
        if self.path is None:  # an in-memory database has only the one connection
            yield self.db.conn
            return
        with erasure_connection(self.path, self._busy_timeout_s) as conn:
            yield conn

    def export_user(self, user_key: str) -> dict[str, Any]:
        """Everything stored about the user, grouped by conversation (for `/export`).

        Each conversation says its `chat` ("private" or "group") and whether it is `current`.
        """
        user = self.get_user(user_key)
        current = {row[0] for row in self.db.execute(
            "SELECT conversation_id FROM chat_scopes WHERE user_key = ?", [user_key]
        )}  # fmt: skip
        if user is not None:
            current.add(user.conversation_id)
        conversations: dict[str, dict[str, Any]] = {}
        for row in self.db.query("SELECT * FROM turns WHERE user_key = ? ORDER BY id", [user_key]):
            cid = row["conversation_id"]
            conversation = conversations.setdefault(
                cid,
                {"id": cid, "chat": row["scope"] or PRIVATE_SCOPE, "current": cid in current,
                 "turns": []},
            )  # fmt: skip
            conversation["turns"].append(
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
            "conversations": list(conversations.values()),
            "events": events,
            "risk_state": self._export_risk(user_key),
        }

    def _export_risk(self, user_key: str) -> dict[str, Any] | None:
        risk = self.get_risk(user_key)
        if risk is None:
            return None
        return {
            "score": round(risk.score, 3),
            "updated": _iso(risk.updated_at),
            "raised": risk.raised,
            "checkin_waiting": risk.checkin,
        }

    def purge_older_than(self, days: int, now: float | None = None) -> int:
        """Delete turns and events older than `days`, and users and group scopes idle since
        then; returns rows."""
        cutoff = (self._clock() if now is None else now) - days * SECONDS_PER_DAY
        total = 0
        with self._atomic():
            for table in ("turns", "events"):
                cursor = self.db.execute(f"DELETE FROM {table} WHERE created_at < ?", [cutoff])
                total += cursor.rowcount
            cursor = self.db.execute("DELETE FROM risk_state WHERE updated_at < ?", [cutoff])
            total += cursor.rowcount
            for sql in (IDLE_SCOPES_SQL, IDLE_USERS_SQL):
                total += self.db.execute(sql, [cutoff]).rowcount
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

    def checkpoint(self) -> bool:
        """One try at copying the WAL into the main file and truncating it; True when done."""
        done = truncate_wal(self.db.conn, deadline_s=0)
        if not done:
            logger.warning("WAL checkpoint was blocked by a reader; it will complete later")
        return done

    def _count(self, sql: str) -> int:
        return int(self.db.execute(sql).fetchone()[0])

    def _atomic(self) -> Any:
        return write_transaction(self.db.conn)

    def _write(self, sql: str, params: list[Any]) -> None:
        with self._atomic():
            self.db.execute(sql, params)


# Idle rows without turns (shared with the retention job in bot.audit_tasks).
IDLE_SCOPES_SQL = (
    "DELETE FROM chat_scopes WHERE last_seen_at < ? AND NOT EXISTS (SELECT 1 FROM turns "
    "WHERE turns.user_key = chat_scopes.user_key AND "
    "turns.conversation_id = chat_scopes.conversation_id)"
)
IDLE_USERS_SQL = (
    "DELETE FROM users WHERE last_seen_at < ? AND NOT EXISTS "
    "(SELECT 1 FROM turns WHERE turns.user_key = users.user_key)"
)


def _file_of(db: Database) -> Path | None:
    """The file behind the database; None for an in-memory one."""
    for row in db.execute("PRAGMA database_list").fetchall():
        if row[1] == "main" and row[2]:
            return Path(row[2])
    return None


def open_memory(
    path: Path,
    secret: bytes,
    *,
    clock: Callable[[], float] = time.time,
    busy_timeout_s: float = BUSY_TIMEOUT_MS / 1000,
) -> MemoryStore:
    """Open (creating if needed) the database file in WAL mode, apply migrations, check the
    secret against the database's key check.

    Raises StorageError naming the file when it cannot be created, read or migrated, and
    ConfigError when the secret is not the one the database was written with.
    """
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        existed = path.exists()
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=busy_timeout_s)
        if not existed:
            os.chmod(path, 0o600)  # SQLite gives the -wal/-shm files the same mode
        conn.execute("PRAGMA schema_version").fetchone()  # fails here if it is not a database
        db = Database(conn)
        db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; commits skip the fsync
    except (OSError, sqlite3.DatabaseError) as exc:
        raise StorageError(f"cannot open the database {path}: {exc}") from exc
    try:
        store = MemoryStore(db, secret, clock=clock, busy_timeout_s=busy_timeout_s)
    except StorageError as exc:
        db.close()
        raise StorageError(f"{path}: {exc}") from exc
    except ConfigError:
        db.close()
        raise
    store.checkpoint()  # finishes an erasure whose WAL clean-up a reader blocked before a restart
    return store


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
