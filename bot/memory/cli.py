"""`solace memory rotate-secret`: the memory database's operator command (`solace migrate`, which
also applies the web console's migration set, is `bot.migrate`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from bot.config import config_option, db_option


@click.group()
def memory() -> None:
    """The memory database: pseudonym-secret rotation (docs/production.md)."""


@memory.command("rotate-secret")
@db_option
@config_option
def rotate_secret_cmd(db: Path | None, config_file: Path | None) -> None:
    """Re-key every stored person from the old pseudonym secret to a new one.

    The secrets come only from the environment, never the command line:
    SOLACE_OLD_PSEUDONYM_SECRET (the one the database was written with) and
    SOLACE_NEW_PSEUDONYM_SECRET. Stop the bot first and take a backup (`solace backup`). Every
    per-user row is re-keyed in one transaction; then set SOLACE_PSEUDONYM_SECRET to the new one.
    """
    from bot.errors import SolaceError
    from bot.memory.backup import database_in_use
    from bot.memory.keys import NEW_SECRET_ENV, OLD_SECRET_ENV

    old, new = os.environ.get(OLD_SECRET_ENV), os.environ.get(NEW_SECRET_ENV)
    missing = [name for name, value in ((OLD_SECRET_ENV, old), (NEW_SECRET_ENV, new)) if not value]
    if missing or old is None or new is None:
        raise click.ClickException(f"set {' and '.join(missing)} in the environment")
    try:
        path = _database(db, config_file)
        if database_in_use(path):
            raise click.ClickException(
                f"{path} is open in another process (a running bot?): stop it first"
            )
        changed = _rotate(path, old.encode(), new.encode())
    except SolaceError as exc:
        raise click.ClickException(str(exc)) from exc
    for table, rows in changed.items():
        click.echo(f"re-keyed {rows} rows: {table}")
    click.echo(
        f"{path}: every row now uses the new secret. Set SOLACE_PSEUDONYM_SECRET to it, unset "
        f"{OLD_SECRET_ENV} and {NEW_SECRET_ENV}, start the bot, and take a new backup "
        "(older backups still need the old secret)."
    )


def _database(db: Path | None, config_file: Path | None) -> Path:
    from bot.config import load_settings

    path = (db or load_settings(config_file).memory.db_path).expanduser()
    if not path.is_file():
        raise click.ClickException(f"{path}: no such database")
    return path


def _rotate(path: Path, old: bytes, new: bytes) -> dict[str, int]:
    import sqlite3

    from bot.errors import StorageError
    from bot.memory.database import migrate_database
    from bot.memory.keys import rotate_secret
    from bot.memory.store import BUSY_TIMEOUT_MS

    migrate_database(path)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute("PRAGMA secure_delete = ON")  # the old keys' index entries are zeroed
        return rotate_secret(conn, old, new)
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot rotate the secret of {path}: {exc}") from exc
    finally:
        conn.close()
