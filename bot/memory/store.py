"""`MemoryStore`: the small verbs over the conversation tables (users, chat scopes, turns, events).

The rest of the package does one thing each: the schema and its migrations (`schema`), opening
the file (`database`), the pseudonym secret (`keys`), erasure (`erasure`), `/export` (`export`),
review consent (`consent`), the risk row (`risk`). The audit jobs' SQL lives in `bot.audit`.

Conversations are per person **and per chat scope**: a person's private chat (a DM, the
console) is one scope, and each group or server channel they talk in is another, keyed by a
keyed hash of (platform, chat, person). A reply is built only from turns of its own scope, so a
group never sees what was said in private, and groups never see each other. Every scope lives
under the same `user_key`, so `/export` and `/forget` cover all of them.

Every write starts with `BEGIN IMMEDIATE` (`write_transaction`). `/forget` runs on a connection
of its own and reports truthfully (`bot.memory.erasure`).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from sqlite_utils import Database

from bot.errors import StorageError
from bot.memory.consent import review_consent, set_review_consent
from bot.memory.erasure import (
    ERASE_CHECKPOINT_SECONDS,
    Erasure,
    checkpoint_now,
    erase_user,
    erasure_connection,
)
from bot.memory.export import export_user
from bot.memory.keys import KeyRing, check_secret_shape, load_key_ring
from bot.memory.records import StoredTurn, UserRecord, turn_from_row
from bot.memory.risk import StoredRisk, read_risk, risk_write
from bot.memory.schema import (
    GROUP_SCOPE,
    IDLE_SCOPES_SQL,
    IDLE_USERS_SQL,
    PRIVATE_SCOPE,
    database_path,
    migrations,
    truncate_wal,
    write_transaction,
)

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
BUSY_TIMEOUT_MS = 5_000
PURGED = (("turns", "created_at"), ("events", "created_at"), ("risk_state", "updated_at"))


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
        self.path = database_path(db)

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
        """Record (`/review on`) or withdraw (`/review off`) consent to moderator review
        (`bot.memory.consent`)."""
        self.ensure_user(user_key, platform)
        with self._atomic():
            set_review_consent(self.db, user_key, on, self._clock)

    def review_consent(self, user_key: str) -> bool:
        """True when the person has turned `/review on`."""
        return review_consent(self.db, user_key)

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
        turns = [turn_from_row(r) for r in rows]
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
        return read_risk(self.db, user_key)

    def set_risk(self, user_key: str, risk: StoredRisk | None) -> None:
        """Store the person's risk state; None deletes it (nothing left worth keeping)."""
        self._write(*risk_write(user_key, risk))

    # --- erasure, export, retention -------------------------------------------------------

    def forget_user(
        self, user_key: str, *, checkpoint_seconds: float = ERASE_CHECKPOINT_SECONDS
    ) -> Erasure:
        """Delete every row of the user from every per-user table, then truncate the WAL.

        Runs on a connection of its own, so it is safe in a worker thread for a file database
        (`bot.memory.erasure`). StorageError: the lock stayed busy and nothing was erased.
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
        """Everything stored about the user, grouped by conversation (for `/export`)."""
        return export_user(self.db, user_key, self.get_user(user_key))

    def purge_older_than(self, days: int, now: float | None = None) -> int:
        """Delete rows older than `days` (`PURGED`), users and scopes idle since; returns rows."""
        cutoff = (self._clock() if now is None else now) - days * SECONDS_PER_DAY
        total = 0
        with self._atomic():
            for table, column in PURGED:
                cursor = self.db.execute(f"DELETE FROM {table} WHERE {column} < ?", [cutoff])
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
