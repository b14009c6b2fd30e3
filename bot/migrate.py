"""`solace migrate`: create or upgrade the bot's database, every migration set it holds.

The memory schema's set (`bot.memory.schema`, m001...) first, then the web console's own
(`bot.web.store`, `Migrations("solace-web")`, w001...), which comes after it. An entry point, so
that it may know both; the memory package never imports the console.
"""

from __future__ import annotations

from pathlib import Path

import click

from bot.config import config_option, db_option


@click.command()
@db_option
@config_option
def migrate(db: Path | None, config_file: Path | None) -> None:
    """Create or upgrade the memory database (append-only migrations; safe to rerun)."""
    from bot.config import load_settings
    from bot.errors import SolaceError
    from bot.memory.database import migrate_database
    from bot.web.store import migrate_web

    try:
        path = db or load_settings(config_file).memory.db_path
        path.expanduser().parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        new, applied = migrate_database(path)
        web_new, web_applied = migrate_web(path)
    except (SolaceError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    new, applied = new + web_new, applied + web_applied
    for name in applied:
        click.echo(f"{'applied now' if name in new else 'already applied'}: {name}")
    click.echo(f"{path}: schema up to date ({len(applied)} migrations)")
