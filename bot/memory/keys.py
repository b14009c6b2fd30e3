"""The pseudonym secret: where it comes from, the key check that pins it, and its rotation.

People are stored under keyed pseudonyms, `HMAC-SHA256(secret, platform + "\\0" + user id)`, and
their group conversations under `HMAC-SHA256(secret, "scope" + platform + chat + user id)`: no
platform or chat id reaches the database. A wrong secret would silently turn everyone into a
stranger (their history, consent and `/forget` out of reach), so the database keeps a key check -
an HMAC of a fixed label under the secret, never the secret - and `load_key_ring` refuses any
other secret with a clear operator error.

Rotation (`solace memory rotate-secret`) cannot recompute pseudonyms from platform ids (they are
never stored), so it chains: every stored key k becomes `HMAC(new, k)` in one transaction, and
from then on a pseudonym is `HMAC(new, HMAC(old, message))`. The old secret is kept in the
database encrypted (AES-256-GCM) under a key derived from the new one, so the bot needs only the
new secret; someone holding only the old secret (e.g. a leaked copy) can no longer link anything.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ConfigError, StorageError
from bot.memory.schema import truncate_wal, user_tables, write_transaction

logger = logging.getLogger(__name__)

SECRET_FILE_NAME = "pseudonym.secret"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 16
KEY_CHECK_LABEL = b"solace pseudonym-secret key check v1"
WRAP_LABEL = b"solace retired pseudonym secrets v1"
NONCE_BYTES = 12  # AES-GCM's standard nonce
OLD_SECRET_ENV = "SOLACE_OLD_PSEUDONYM_SECRET"
NEW_SECRET_ENV = "SOLACE_NEW_PSEUDONYM_SECRET"
SECRET_MISMATCH = (
    "SOLACE_PSEUDONYM_SECRET is not the secret this database was written with (its key check "
    "differs). Starting with it would make every stored person unreachable: their history, "
    "consent and /forget. Set the original secret again; to change it, run "
    "`solace memory rotate-secret` (docs/production.md)."
)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The current secret plus the retired ones a rotation chained under it (oldest first)."""

    current: bytes
    retired: tuple[bytes, ...] = ()

    def keyed(self, message: str) -> str:
        """The chained HMAC-SHA256 of `message` (hex); plain HMAC under `current` if never rotated."""
        keys = (*self.retired, self.current)
        digest = hmac.new(keys[0], message.encode(), hashlib.sha256).hexdigest()
        for key in keys[1:]:
            digest = rekey(key, digest)
        return digest

    def pseudonym(self, platform: str, user_id: str) -> str:
        """The stable pseudonym of a platform user."""
        return self.keyed(f"{platform}\x00{user_id}")

    def scope_key(self, platform: str, user_id: str, chat_id: str) -> str:
        """One person's key for one group chat or channel (unlinkable across people)."""
        return self.keyed(f"scope\x00{platform}\x00{chat_id}\x00{user_id}")

    def derive(self, label: bytes) -> bytes:
        """A key for another purpose (log ids), derived from the current secret."""
        return hmac.new(self.current, label, hashlib.sha256).digest()


def rekey(secret: bytes, stored_key: str) -> str:
    """What a stored key becomes when `secret` is chained on top of it."""
    return hmac.new(secret, stored_key.encode(), hashlib.sha256).hexdigest()


def key_check(secret: bytes) -> str:
    """The value stored to recognise the secret later (it does not reveal the secret)."""
    return hmac.new(secret, KEY_CHECK_LABEL, hashlib.sha256).hexdigest()


def _wrap_key(secret: bytes) -> bytes:
    return hmac.new(secret, WRAP_LABEL, hashlib.sha256).digest()


def seal_retired(current: bytes, retired: Sequence[bytes]) -> str | None:
    """The retired secrets encrypted under `current` (base64 of nonce + AES-GCM ciphertext)."""
    if not retired:
        return None
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    plain = json.dumps([key.hex() for key in retired]).encode()
    sealed = AESGCM(_wrap_key(current)).encrypt(nonce, plain, WRAP_LABEL)
    return base64.b64encode(nonce + sealed).decode()


def open_retired(current: bytes, sealed: str | None) -> tuple[bytes, ...]:
    """The retired secrets; StorageError when the stored value was damaged or altered."""
    if not sealed:
        return ()
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        raw = base64.b64decode(sealed, validate=True)
        plain = AESGCM(_wrap_key(current)).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], WRAP_LABEL)
        return tuple(bytes.fromhex(item) for item in json.loads(plain))
    except (InvalidTag, ValueError) as exc:
        raise StorageError(
            "the retired pseudonym secrets in secret_check cannot be decrypted (damaged or "
            "altered); restore the database from a backup"
        ) from exc


def stored_check(conn: sqlite3.Connection) -> tuple[str, str | None] | None:
    """(key check, sealed retired secrets) from the database; None if none is stored yet."""
    try:
        row = conn.execute("SELECT key_check, retired FROM secret_check WHERE id = 1").fetchone()
    except sqlite3.OperationalError:  # not migrated yet: no table
        return None
    return None if row is None else (row[0], row[1])


def secret_matches(conn: sqlite3.Connection, secret: bytes) -> bool | None:
    """True/False when the database pins a secret; None when it has no key check yet."""
    stored = stored_check(conn)
    if stored is None:
        return None
    return hmac.compare_digest(stored[0], key_check(secret))


def file_secret_matches(path: Path, secret: bytes) -> bool | None:
    """`secret_matches` on a database file, opened read-only (for health and audit checks)."""
    uri = f"file:{Path(path).expanduser().resolve().as_posix()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
            return secret_matches(conn, secret)
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot read the key check of {path}: {exc}") from exc


def require_file_secret(path: Path, secret: bytes) -> None:
    """ConfigError (SECRET_MISMATCH) when the file pins another secret."""
    if file_secret_matches(path, secret) is False:
        raise ConfigError(SECRET_MISMATCH)


def load_key_ring(
    conn: sqlite3.Connection, secret: bytes, clock: Callable[[], float] = time.time
) -> KeyRing:
    """The key ring for `secret`, pinning it in the database on first use.

    Raises ConfigError (SECRET_MISMATCH) when the database was written with another secret.
    A database from before the key check existed adopts the first secret it is opened with.
    """
    stored = stored_check(conn)
    if stored is None:
        with write_transaction(conn):
            conn.execute(
                "INSERT OR IGNORE INTO secret_check (id, key_check, retired, created_at) "
                "VALUES (1, ?, NULL, ?)",
                [key_check(secret), clock()],
            )
        stored = stored_check(conn)  # another process may have pinned its secret first
        if stored is None:  # pragma: no cover - the INSERT always leaves a row
            raise StorageError("the key check vanished after it was written")
    if not hmac.compare_digest(stored[0], key_check(secret)):
        raise ConfigError(SECRET_MISMATCH)
    return KeyRing(secret, open_retired(secret, stored[1]))


def rotate_secret(
    conn: sqlite3.Connection, old: bytes, new: bytes, clock: Callable[[], float] = time.time
) -> dict[str, int]:
    """Re-key every per-user row from `old` to `new` in one transaction; rows changed per table.

    Every `user_key` column of every table, and the group scope keys, become `rekey(new, key)`;
    the key check becomes the new secret's and the retired chain gains `old`, sealed under `new`.
    Afterwards the WAL is truncated so the old keys do not linger there.
    """
    check_secret_shape(new, "the new secret")
    if hmac.compare_digest(old, new):
        raise ConfigError("the new secret is the same as the old one")
    ring = load_key_ring(conn, old, clock)
    conn.create_function("solace_rekey", 1, lambda key: rekey(new, key), deterministic=True)
    changed: dict[str, int] = {}
    with write_transaction(conn):
        for table in user_tables(conn):
            changed[table] = conn.execute(
                f"UPDATE [{table}] SET user_key = solace_rekey(user_key) WHERE user_key IS NOT NULL"
            ).rowcount
        changed["chat_scopes.scope_key"] = conn.execute(
            "UPDATE chat_scopes SET scope_key = solace_rekey(scope_key)"
        ).rowcount
        conn.execute(
            "UPDATE secret_check SET key_check = ?, retired = ?, rotated_at = ? WHERE id = 1",
            [key_check(new), seal_retired(new, (*ring.retired, old)), clock()],
        )
    if not truncate_wal(conn, deadline_s=30.0):
        logger.warning("after the rotation the WAL could not be truncated (a reader is open)")
    return changed


def check_secret_shape(secret: bytes, what: str = "SOLACE_PSEUDONYM_SECRET") -> None:
    """ConfigError unless the secret is long enough to key pseudonyms."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{what} must be at least {MIN_SECRET_BYTES} characters")


def resolve_secret(secret_env: str | None, db_path: Path, *, allow_file: bool) -> bytes:
    """The pseudonym key: SOLACE_PSEUDONYM_SECRET, else (dev only) a file next to the database.

    Args:
        secret_env: the value of SOLACE_PSEUDONYM_SECRET (from Settings), or None.
        db_path: the database file; the generated secret lives beside it as `pseudonym.secret`.
        allow_file: True for `solace chat` on a developer machine; servers must set the env var.
    """
    if secret_env:
        check_secret_shape(secret_env.encode())
        return secret_env.encode()
    if not allow_file:
        raise ConfigError(
            "SOLACE_PSEUDONYM_SECRET is not set; generate one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'` and keep it safe "
            "(the database pins it: another secret is refused at start-up)"
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
