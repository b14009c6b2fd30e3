"""`solace migrate`: apply the memory schema's pending migrations to a database file."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file (default: memory.db_path from settings).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML settings file (default: SOLACE_CONFIG or ./config.toml).",
)
def migrate(db: Path | None, config_file: Path | None) -> None:
    """Create or upgrade the memory database (append-only migrations; safe to rerun)."""
    from bot.config import load_settings
    from bot.errors import SolaceError
    from bot.memory import migrate_database
    from bot.web.store import migrate_web

    try:
        path = db or load_settings(config_file).memory.db_path
        path.expanduser().parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        new, applied = migrate_database(path)
        web_new, web_applied = migrate_web(path)  # the web console's own set (bot/web/store.py)
    except (SolaceError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    new, applied = new + web_new, applied + web_applied
    for name in applied:
        click.echo(f"{'applied now' if name in new else 'already applied'}: {name}")
    click.echo(f"{path}: schema up to date ({len(applied)} migrations)")
