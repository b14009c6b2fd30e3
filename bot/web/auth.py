"""Console accounts and logins: argon2id password hashes, login rate limits, and server-side
logins behind the signed cookie (only a SHA-256 of the random login id is stored)."""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any

from bot.web.store import transaction

ROLES = ("moderator", "rater", "admin")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
LOGIN_WINDOW_SECONDS = 15 * 60
TOUCH_EVERY_SECONDS = 60.0


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
