"""The command-line options every `solace` subcommand that reads the bot's settings shares.

Cheap to import (click only): the settings machinery loads when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot.errors import SolaceError

if TYPE_CHECKING:
    from bot.config.settings import Settings

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML settings file (default: SOLACE_CONFIG or ./config.toml).",
)
db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file (default: memory.db_path from settings).",
)


def settings_or_exit(config_file: Path | None, **overrides: Any) -> Settings:
    """`load_settings` for a command: a problem becomes a ClickException that names it."""
    from bot.config.settings import load_settings

    try:
        return load_settings(config_file, **overrides)
    except SolaceError as exc:
        raise click.ClickException(str(exc)) from None
