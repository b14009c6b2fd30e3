"""The console's tables and accounts: migrations, connections, logins, rate limits, audit log.

The web tables live in the bot's own SQLite file, built by their own append-only migration set
(`Migrations("solace-web")`, applied by `open_web_db` and by `solace migrate`), so they never
collide with the memory schema's. Tables that hold rows about a bot user (`web_queue`,
`web_notes`, `web_labels`) have a `user_key` column: `MemoryStore.forget_user` enumerates every
such table, so `/forget` erases them too. Accounts, logins and the audit log are about staff;
studies hold raters' own chats and data-set dialogues, never a bot user's words.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

from bot.errors import StorageError

BUSY_TIMEOUT_MS = 5_000
ROLES = ("moderator", "rater", "admin")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
LOGIN_WINDOW_SECONDS = 15 * 60
TOUCH_EVERY_SECONDS = 60.0
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
    from bot.memory import migrate_database

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


# --- accounts --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """A console user (staff, never a bot user)."""

    id: int
    name: str
    role: str

    @property
    def moderates(self) -> bool:
        """May work the moderation queue."""
        return self.role in ("moderator", "admin")

    @property
    def rates(self) -> bool:
        """May take part in studies."""
        return self.role in ("rater", "admin")

    @property
    def is_admin(self) -> bool:
        """May create studies, read results and the audit log, handle escalations."""
        return self.role == "admin"


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()  # RFC 9106 low-memory profile (argon2id)


def check_password_rules(password: str) -> None:
    """ValueError naming the rule a new password breaks."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"the password may have at most {MAX_PASSWORD_CHARS} characters")


def normalise_name(name: str) -> str:
    """An account name as stored (lower case), or ValueError."""
    name = name.strip().lower()
    if not NAME_RE.match(name):
        raise ValueError("names are 2-32 characters: letters, digits, '.', '_' or '-'")
    return name


def add_account(conn: sqlite3.Connection, name: str, role: str, password: str, now: float) -> int:
    """Create an account; ValueError for a bad name, role or password, or a taken name."""
    name = normalise_name(name)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    check_password_rules(password)
    digest = _hasher().hash(password)
    try:
        with transaction(conn):
            cursor = conn.execute(
                "INSERT INTO web_accounts (name, role, password_hash, created_at, "
                "password_changed_at) VALUES (?, ?, ?, ?, ?)",
                [name, role, digest, now, now],
            )
    except sqlite3.IntegrityError:
        raise ValueError(f"an account named {name!r} already exists") from None
    return int(cursor.lastrowid or 0)


def set_password(conn: sqlite3.Connection, name: str, password: str, now: float) -> None:
    """Change a password; the account's logins are revoked."""
    check_password_rules(password)
    digest = _hasher().hash(password)
    with transaction(conn):
        row = conn.execute("SELECT id FROM web_accounts WHERE name = ?", [name]).fetchone()
        if row is None:
            raise ValueError(f"no account named {name!r}")
        conn.execute(
            "UPDATE web_accounts SET password_hash = ?, password_changed_at = ? WHERE id = ?",
            [digest, now, row[0]],
        )
        conn.execute(
            "UPDATE web_logins SET revoked_at = ? WHERE account_id = ? AND revoked_at IS NULL",
            [now, row[0]],
        )


def set_disabled(conn: sqlite3.Connection, name: str, disabled: bool, now: float) -> None:
    """Disable (logins revoked) or re-enable an account."""
    with transaction(conn):
        row = conn.execute("SELECT id FROM web_accounts WHERE name = ?", [name]).fetchone()
        if row is None:
            raise ValueError(f"no account named {name!r}")
        conn.execute(
            "UPDATE web_accounts SET disabled_at = ? WHERE id = ?", [now if disabled else None,
                                                                     row[0]])  # fmt: skip
        if disabled:
            conn.execute("UPDATE web_logins SET revoked_at = ? WHERE account_id = ? AND "
                         "revoked_at IS NULL", [now, row[0]])  # fmt: skip


def list_accounts(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every account (no password hashes)."""
    return conn.execute(
        "SELECT id, name, role, created_at, disabled_at, last_login_at FROM web_accounts "
        "ORDER BY name"
    ).fetchall()


def accounts_by_role(conn: sqlite3.Connection, *roles: str) -> list[Account]:
    """Enabled accounts with one of `roles`."""
    marks = ", ".join("?" * len(roles))
    rows = conn.execute(
        f"SELECT id, name, role FROM web_accounts WHERE disabled_at IS NULL AND role IN "
        f"({marks}) ORDER BY name",
        list(roles),
    ).fetchall()
    return [Account(r[0], r[1], r[2]) for r in rows]


# --- logging in ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """Failed attempts allowed per window, per account name and per client address."""

    per_account: int
    per_address: int


def _failures(conn: sqlite3.Connection, column: str, value: str, since: float) -> int:
    return int(
        conn.execute(
            f"SELECT COUNT(*) FROM web_login_attempts WHERE {column} = ? AND ok = 0 AND at >= ?",
            [value, since],
        ).fetchone()[0]
    )


def check_login(
    conn: sqlite3.Connection, name: str, password: str, address: str, now: float,
    limits: LoginLimits,
) -> tuple[Account | None, str | None]:  # fmt: skip
    """(account, None) on success, else (None, why): "locked" or "invalid".

    A name or address with too many recent failures is refused before the password is checked
    (so guessing stops working); an unknown name costs the same hash as a known one.
    """
    name = name.strip().lower()[:64]
    since = now - LOGIN_WINDOW_SECONDS
    if (
        _failures(conn, "name", name, since) >= limits.per_account
        or _failures(conn, "address", address, since) >= limits.per_address
    ):
        _record_attempt(conn, name, address, now, ok=False)
        return None, "locked"
    row = conn.execute(
        "SELECT id, name, role, password_hash, disabled_at FROM web_accounts WHERE name = ?",
        [name],
    ).fetchone()
    ok = _verify(row["password_hash"] if row else None, password)
    if not ok or row is None or row["disabled_at"] is not None:
        _record_attempt(conn, name, address, now, ok=False)
        return None, "invalid"
    _record_attempt(conn, name, address, now, ok=True)
    _maybe_rehash(conn, row["id"], row["password_hash"], password)
    return Account(row["id"], row["name"], row["role"]), None


DUMMY_HASH: list[str] = []  # computed once: the same cost for unknown names


def _verify(digest: str | None, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _hasher()
    if digest is None:
        if not DUMMY_HASH:
            DUMMY_HASH.append(hasher.hash(secrets.token_hex(16)))
        digest = DUMMY_HASH[0]
        password = password + "\x00never"
    try:
        return bool(hasher.verify(digest, password[:MAX_PASSWORD_CHARS]))
    except (VerificationError, InvalidHashError):
        return False


def _maybe_rehash(conn: sqlite3.Connection, account_id: int, digest: str, password: str) -> None:
    hasher = _hasher()
    if hasher.check_needs_rehash(digest):
        with transaction(conn):
            conn.execute("UPDATE web_accounts SET password_hash = ? WHERE id = ?",
                         [hasher.hash(password), account_id])  # fmt: skip


def _record_attempt(
    conn: sqlite3.Connection, name: str, address: str, now: float, ok: bool
) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO web_login_attempts (name, address, at, ok) VALUES (?, ?, ?, ?)",
            [name, address, now, int(ok)],
        )
        conn.execute("DELETE FROM web_login_attempts WHERE at < ?", [now - 86_400])


def _sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def start_login(conn: sqlite3.Connection, account_id: int, now: float, hours: float) -> str:
    """A new login: returns the session id for the signed cookie (only its hash is stored)."""
    sid = secrets.token_urlsafe(32)
    with transaction(conn):
        conn.execute(
            "INSERT INTO web_logins (sid_hash, account_id, created_at, last_seen_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [_sid_hash(sid), account_id, now, now, now + hours * 3600],
        )
        conn.execute("UPDATE web_accounts SET last_login_at = ? WHERE id = ?", [now, account_id])
        conn.execute("DELETE FROM web_logins WHERE expires_at < ?", [now - 86_400])
    return sid


def current_account(conn: sqlite3.Connection, sid: str, now: float) -> Account | None:
    """The account of a live login, or None (unknown, expired, revoked or disabled)."""
    row = conn.execute(
        "SELECT a.id, a.name, a.role, l.id AS login, l.last_seen_at FROM web_logins l "
        "JOIN web_accounts a ON a.id = l.account_id WHERE l.sid_hash = ? AND "
        "l.revoked_at IS NULL AND l.expires_at > ? AND a.disabled_at IS NULL",
        [_sid_hash(sid), now],
    ).fetchone()
    if row is None:
        return None
    if now - (row["last_seen_at"] or 0) > TOUCH_EVERY_SECONDS:
        conn.execute("UPDATE web_logins SET last_seen_at = ? WHERE id = ?", [now, row["login"]])
    return Account(row["id"], row["name"], row["role"])


def end_login(conn: sqlite3.Connection, sid: str, now: float) -> None:
    """Log out: the login is revoked server-side, whatever the cookie says later."""
    with transaction(conn):
        conn.execute("UPDATE web_logins SET revoked_at = ? WHERE sid_hash = ?",
                     [now, _sid_hash(sid)])  # fmt: skip


# --- the audit log ---------------------------------------------------------------------------


def audit(
    conn: sqlite3.Connection, now: float, account: Account | None, action: str,
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
