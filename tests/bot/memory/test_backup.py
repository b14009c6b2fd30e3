"""Online backups and restore on real SQLite files (bot/memory/backup.py, `solace backup/restore`)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.errors import StorageError
from bot.memory import open_memory
from bot.memory.backup import (
    backup_database,
    check_file,
    database_in_use,
    list_backups,
    prune_backups,
    restore_database,
)

SECRET = b"backup-test-secret-0123456789abcdef"
# A second process that keeps the database open, as a running bot does, until stdin closes.
HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("PRAGMA journal_mode=WAL")
print(conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0], flush=True)
sys.stdin.readline()
print(conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0], flush=True)
"""


def _turn_ids(path: Path) -> list[int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("SELECT id FROM turns ORDER BY id")]
    finally:
        conn.close()


def _rows(path: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT id, user_key, role, text FROM turns ORDER BY id").fetchall()
    finally:
        conn.close()


def _seed(path: Path, n: int = 5) -> None:
    store = open_memory(path, SECRET)
    key = store.pseudonym("telegram", "42")
    for i in range(n):
        store.add_turn(key, platform="telegram", role="user", text=f"message {i}", tokens=2)
    store.db.close()


def test_backup_under_concurrent_writes_is_consistent_and_loses_nothing(tmp_path: Path) -> None:
    """Snapshots taken while a writer commits are complete prefixes; the last one has it all."""
    db_path, folder = tmp_path / "solace.db", tmp_path / "backups"
    store = open_memory(db_path, SECRET)
    min_writes, written, stop = 300, [0], threading.Event()
    snapshots: list[Path] = []

    def writer() -> None:
        # Keep writing until three backups had completed before some write began.
        before_last_write = 0
        while written[0] < min_writes or before_last_write < 3:
            before_last_write = len(snapshots)
            key = store.pseudonym("discord", str(written[0] % 7))
            store.add_turn(key, platform="discord", role="user", text="turn ü 🌧", tokens=3)
            written[0] += 1
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not stop.is_set():
        snapshots.append(backup_database(db_path, folder, keep=0).path)
    thread.join()
    snapshots.append(backup_database(db_path, folder, keep=0).path)
    partial = [s for s in snapshots if len(_turn_ids(s)) < written[0]]
    assert len(partial) >= 3, "backups were taken while the writer was committing"
    for snapshot in snapshots:
        assert check_file(snapshot) == "ok"
        ids = _turn_ids(snapshot)
        assert ids == list(range(1, len(ids) + 1)), "a backup must be a consistent prefix"
    assert _rows(snapshots[-1]) == _rows(db_path)
    assert len(_rows(db_path)) == written[0]
    # Round trip: restore the final copy into a new location and compare every row.
    restored = tmp_path / "restored" / "solace.db"
    result = restore_database(snapshots[-1], restored)
    assert result.integrity == "ok"
    assert _rows(restored) == _rows(db_path)
    store.db.close()


def test_backup_files_are_private_single_files(tmp_path: Path) -> None:
    """A backup is mode 0600, in rollback-journal mode (no -wal beside it), named by UTC time."""
    db_path = tmp_path / "solace.db"
    _seed(db_path)
    result = backup_database(db_path, tmp_path / "b", keep=0, clock=lambda: 1_700_000_000.25)
    assert result.path.name == "solace-20231114T221320.250000Z.db"
    assert result.path.stat().st_mode & 0o777 == 0o600
    conn = sqlite3.connect(result.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    assert not Path(f"{result.path}-wal").exists()


def test_retention_keeps_newest(tmp_path: Path) -> None:
    """keep=3 leaves the three newest backups; keep=0 keeps all; partial files are ignored."""
    db_path, folder = tmp_path / "solace.db", tmp_path / "b"
    _seed(db_path)
    clock = iter(range(1_700_000_000, 1_700_000_100, 10))
    made = [backup_database(db_path, folder, keep=0, clock=lambda: next(clock)).path]
    made += [backup_database(db_path, folder, keep=0, clock=lambda: next(clock)).path]
    (folder / ".solace-x.db.partial").write_bytes(b"half")
    pruned: list[Path] = []
    for _ in range(3):
        result = backup_database(db_path, folder, keep=3, clock=lambda: next(clock))
        made.append(result.path)
        pruned += result.pruned
    assert list_backups(folder) == made[-3:]
    assert pruned == made[:2]
    assert prune_backups(folder, 0) == []
    assert prune_backups(folder, 1) == made[-3:-1]


def test_backup_of_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    """No file is created where the database should be."""
    with pytest.raises(StorageError, match="no database at"):
        backup_database(tmp_path / "nope.db", tmp_path / "b", keep=1)
    assert not (tmp_path / "nope.db").exists()


def test_restore_refuses_a_corrupt_backup_and_leaves_the_database(tmp_path: Path) -> None:
    """integrity_check runs on the copy before anything is overwritten."""
    db_path = tmp_path / "solace.db"
    _seed(db_path, n=3)
    good = backup_database(db_path, tmp_path / "b", keep=0).path
    bad = tmp_path / "bad.db"
    conn = sqlite3.connect(good)
    root, page_size = conn.execute(
        "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master "
        "WHERE name = 'turns'"
    ).fetchone()
    conn.close()
    data = bytearray(good.read_bytes())
    start = (root - 1) * page_size
    data[start : start + 12] = b"\x0d\x00\x09\xff\xff\x00\xff\x00\x00\xff\xff\xff"  # bad header
    bad.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="integrity"):
        restore_database(bad, db_path)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError):
        restore_database(garbage, db_path)
    assert len(_rows(db_path)) == 3


def test_restore_refuses_a_database_open_in_another_process(tmp_path: Path) -> None:
    """A running bot (another process holding the database) blocks restore unless forced."""
    db_path, folder = tmp_path / "solace.db", tmp_path / "b"
    _seed(db_path, n=4)
    old = backup_database(db_path, folder, keep=0).path
    _seed(db_path, n=2)  # the live database moves on to 6 turns
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "6"
        assert database_in_use(db_path)
        with pytest.raises(StorageError, match="--force"):
            restore_database(old, db_path)
        assert len(_rows(db_path)) == 6
        result = restore_database(old, db_path, force=True, safety_copy_dir=folder)
        assert result.safety_copy is not None and len(_rows(result.safety_copy)) == 6
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "4", "the running process sees the restore"
    finally:
        holder.kill()
        holder.wait()
    assert not database_in_use(db_path)
    assert len(_rows(db_path)) == 4


def test_cli_backup_and_restore_round_trip(tmp_path: Path, monkeypatch) -> None:
    """`solace backup --json` then `solace restore --latest` bring back the backed-up rows."""
    db_path = tmp_path / "data" / "solace.db"
    monkeypatch.setenv("SOLACE_MEMORY__DB_PATH", str(db_path))
    monkeypatch.setenv("SOLACE_BACKUP__KEEP", "2")
    monkeypatch.delenv("SOLACE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    _seed(db_path, n=3)
    runner = CliRunner()
    first = runner.invoke(cli, ["backup", "--json"])
    assert first.exit_code == 0, first.output
    made = json.loads(first.output)
    assert made["integrity"] == "ok" and Path(made["path"]).parent == db_path.parent / "backups"
    _seed(db_path, n=2)
    restored = runner.invoke(cli, ["restore", "--latest"])
    assert restored.exit_code == 0, restored.output
    assert "pre-restore" in restored.output
    assert len(_rows(db_path)) == 3
    for _ in range(3):
        time.sleep(0.01)
        assert runner.invoke(cli, ["backup"]).exit_code == 0
    assert len(list_backups(db_path.parent / "backups")) == 2  # retention from SOLACE_BACKUP__KEEP
    missing = runner.invoke(cli, ["restore", str(tmp_path / "nothing.db")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    assert runner.invoke(cli, ["restore"]).exit_code == 2
