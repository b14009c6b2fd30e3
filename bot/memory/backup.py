"""Consistent online backups of the SQLite store, retention, and restore.

A backup is taken with SQLite's online backup API (`sqlite3.Connection.backup`) while the bot keeps
running: in WAL mode the copy is one read transaction, so writers are never blocked and the copy
is a snapshot of committed data. Each copy is checked with `PRAGMA integrity_check`, switched to
rollback-journal mode (one self-contained file) and only then renamed into place, so a file named
`solace-*.db` in the backup folder is always complete. Older copies beyond the retention are
deleted. Restore goes the other way through the same API, so SQLite itself handles the target's
WAL and locks; it refuses a database another process has open unless forced.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import StorageError

logger = logging.getLogger(__name__)

BACKUP_PREFIX = "solace-"
BACKUP_SUFFIX = ".db"
PRE_RESTORE_TAG = "pre-restore"
BUSY_TIMEOUT_SECONDS = 30.0
# SQLite's unix VFS: every connection to a WAL database holds a shared POSIX lock on this byte of
# the -shm file for as long as it is open (the "dead man switch", UNIX_SHM_DMS in os_unix.c:
# 120 + SQLITE_SHM_NLOCK). If we can take it exclusively, no other process has the database open.
SHM_DMS_OFFSET = 128


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What one backup produced."""

    path: Path
    bytes: int
    seconds: float
    integrity: str
    pruned: tuple[Path, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What one restore did."""

    source: Path
    target: Path
    integrity: str
    safety_copy: Path | None


def default_backup_dir(db_path: Path) -> Path:
    """`<database folder>/backups`, used when no backup folder is configured."""
    return Path(db_path).expanduser().parent / "backups"


def _connect_existing(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open a database that must already exist (never creates an empty file by accident)."""
    mode = "ro" if readonly else "rw"
    uri = f"file:{Path(path).resolve().as_posix()}?mode={mode}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS)
        conn.execute("PRAGMA schema_version").fetchone()  # fails here if it is not a database
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open the database {path}: {exc}") from exc
    return conn


def integrity_check(conn: sqlite3.Connection) -> str:
    """`PRAGMA integrity_check` as one string: "ok", or the problems SQLite reports."""
    rows = conn.execute("PRAGMA integrity_check").fetchall()
    return "; ".join(str(row[0]) for row in rows) or "no answer"


def check_file(path: Path) -> str:
    """Integrity of a database file opened read-only ("ok" when sound)."""
    if not Path(path).is_file():
        raise StorageError(f"{path} does not exist or is not a file")
    conn = _connect_existing(path, readonly=True)
    try:
        return integrity_check(conn)
    except sqlite3.DatabaseError as exc:
        return f"not a usable SQLite database: {exc}"
    finally:
        conn.close()


def database_in_use(db_path: Path) -> bool:
    """True when another process has the (WAL-mode) database open, e.g. a running bot.

    Probes SQLite's own lock on the -shm file without opening the database. Only a call from a
    process that holds no connection to the same file is meaningful (POSIX locks are per process).
    """
    shm = Path(f"{db_path}-shm")
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StorageError(f"cannot probe {shm}: {exc}") from exc
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SHM_DMS_OFFSET, os.SEEK_SET)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return True
        raise StorageError(f"cannot probe {shm}: {exc}") from exc
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, SHM_DMS_OFFSET, os.SEEK_SET)
        return False
    finally:
        os.close(fd)


def _timestamp(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%dT%H%M%S.%f")


def backup_name(now: float, tag: str = "") -> str:
    """`solace-20260101T120000.123456Z.db` (sortable by time; `tag` goes before the time)."""
    middle = f"{tag}-" if tag else ""
    return f"{BACKUP_PREFIX}{middle}{_timestamp(now)}Z{BACKUP_SUFFIX}"


def list_backups(backup_dir: Path) -> list[Path]:
    """Complete backups in `backup_dir`, oldest first (temporary files are not listed)."""
    folder = Path(backup_dir)
    if not folder.is_dir():
        return []
    found = [
        p
        for p in folder.iterdir()
        if p.name.startswith(BACKUP_PREFIX) and p.name.endswith(BACKUP_SUFFIX) and p.is_file()
    ]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def _copy(source: sqlite3.Connection, target_path: Path) -> str:
    """Copy `source` into a new file at `target_path` and verify it; returns integrity."""
    target = sqlite3.connect(str(target_path))
    try:
        # pages=-1: one step, one read transaction on the source, hence a consistent snapshot.
        # In WAL mode this does not block the bot's writers.
        source.backup(target, pages=-1)
        result = integrity_check(target)
        target.execute("PRAGMA journal_mode = DELETE")  # a backup is one self-contained file
        target.commit()
    finally:
        target.close()
    return result


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_database(
    db_path: Path,
    backup_dir: Path,
    *,
    keep: int,
    clock: Callable[[], float] = time.time,
    tag: str = "",
) -> BackupResult:
    """Write a consistent copy of `db_path` into `backup_dir`, then apply the retention.

    Args:
        keep: how many backups to keep (the newest; 0 = keep all). Counted over every
            `solace-*.db` in the folder, including the one just written.
        tag: an optional word in the file name (restore uses "pre-restore").

    Raises StorageError naming the file when the database cannot be read, the copy fails its
    integrity check (the copy is then deleted), or the folder cannot be written.
    """
    started = time.perf_counter()
    db_path = Path(db_path).expanduser()
    if not db_path.is_file():
        raise StorageError(f"no database at {db_path} (is memory.db_path right?)")
    folder = Path(backup_dir).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StorageError(f"cannot create the backup folder {folder}: {exc}") from exc
    final = folder / backup_name(clock(), tag)
    partial = folder / f".{final.name}.partial"
    source = _connect_existing(db_path)
    try:
        with _private_umask():
            integrity = _copy(source, partial)
    except (sqlite3.Error, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise StorageError(f"backup of {db_path} into {folder} failed: {exc}") from exc
    finally:
        source.close()
    if integrity != "ok":
        partial.unlink(missing_ok=True)
        raise StorageError(f"the copy of {db_path} failed its integrity check: {integrity}")
    _fsync(partial)
    partial.rename(final)
    pruned = prune_backups(folder, keep)
    took = time.perf_counter() - started
    logger.info("backup %s (%d bytes) in %.2fs", final.name, final.stat().st_size, took)
    return BackupResult(final, final.stat().st_size, took, integrity, tuple(pruned))


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    """Backups hold personal data: files 0600 (SQLite creates them with 0666 & ~umask)."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def prune_backups(backup_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups (0 = keep all); returns the deleted paths."""
    if keep <= 0:
        return []
    backups = list_backups(backup_dir)
    doomed = backups[:-keep] if len(backups) > keep else []
    for path in doomed:
        path.unlink(missing_ok=True)
        logger.info("backup retention: deleted %s", path.name)
    return doomed


def restore_database(
    backup: Path,
    db_path: Path,
    *,
    force: bool = False,
    safety_copy_dir: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> RestoreResult:
    """Replace the contents of `db_path` with `backup`, after checking the backup's integrity.

    Args:
        force: restore even though another process (a running bot) has the database open. SQLite
            keeps the file consistent, but that process's in-memory state will not match: stop
            the bot first whenever possible.
        safety_copy_dir: where to back up the current database first (None = no safety copy).

    Raises StorageError when the backup is missing or unsound, the target is in use without
    `force`, or the copy fails.
    """
    backup, db_path = Path(backup).expanduser(), Path(db_path).expanduser()
    integrity = check_file(backup)
    if integrity != "ok":
        raise StorageError(f"{backup} failed its integrity check, not restoring: {integrity}")
    if db_path.exists() and database_in_use(db_path) and not force:
        raise StorageError(
            f"{db_path} is open in another process (is the bot running?); stop it first, "
            "or pass --force to restore into the running database"
        )
    safety_copy = None
    if safety_copy_dir is not None and db_path.is_file():
        safety_copy = backup_database(
            db_path, safety_copy_dir, keep=0, clock=clock, tag=PRE_RESTORE_TAG
        ).path
    db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    source = _connect_existing(backup, readonly=True)
    try:
        with _private_umask():
            target = sqlite3.connect(str(db_path), timeout=BUSY_TIMEOUT_SECONDS)
        try:
            source.backup(target, pages=-1)  # SQLite locks the target and writes through its WAL
            result = integrity_check(target)
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise StorageError(f"restore of {backup} into {db_path} failed: {exc}") from exc
    finally:
        source.close()
    if result != "ok":
        raise StorageError(f"{db_path} failed its integrity check after the restore: {result}")
    logger.info("restored %s into %s", backup.name, db_path)
    return RestoreResult(backup, db_path, result, safety_copy)
