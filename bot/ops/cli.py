"""Operator commands: `solace health`, `solace backup`, `solace restore`.

They read the same settings as `solace serve` (environment `SOLACE_*`, then the TOML file), so a
cron job, a systemd timer or a container health check runs them with the bot's environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bot.config import config_option, settings_or_exit
from bot.errors import SolaceError

STATUS_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--generate", is_flag=True, help="Also load the model and generate a few tokens (slow)."
)
def health(config_file: Path | None, as_json: bool, generate: bool) -> None:
    """Check the database, the model or model server, disk, backups and tokens' shapes.

    Exit code 0 when nothing failed, 1 otherwise (warnings do not fail). Secrets are never
    printed. Suitable for a container HEALTHCHECK or a monitoring probe.
    """
    from bot.config import load_settings
    from bot.ops import health as checks_module

    try:
        settings = load_settings(config_file)
    except SolaceError as exc:
        checks = [checks_module.Check("config", "fail", str(exc))]
    else:
        checks = [
            checks_module.Check("config", "ok", "settings load"),
            *checks_module.run_checks(settings, generate=generate),
        ]
    if as_json:
        click.echo(json.dumps(checks_module.as_json(checks), indent=2))
    else:
        for check in checks:
            click.echo(f"{STATUS_MARK[check.status]} {check.name}: {check.detail}")
    raise SystemExit(0 if checks_module.healthy(checks) else 1)


@click.command()
@config_option
@click.option(
    "--dir",
    "backup_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Backup folder (default: backup.dir, else `backups` beside the database).",
)
@click.option("--keep", type=click.IntRange(min=0), default=None, help="Override backup.keep.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def backup(
    config_file: Path | None, backup_dir: Path | None, keep: int | None, as_json: bool
) -> None:
    """Copy the database while the bot runs (SQLite's online backup API), then prune old copies.

    The copy is a consistent snapshot, passes PRAGMA integrity_check before it gets its final
    name `solace-<UTC time>Z.db`, and is readable only by its owner.
    """
    from bot.memory.backup import backup_database, default_backup_dir

    settings = settings_or_exit(config_file)
    db_path = settings.memory.db_path
    folder = backup_dir or settings.backup.dir or default_backup_dir(db_path)
    try:
        result = backup_database(
            db_path, folder, keep=settings.backup.keep if keep is None else keep
        )
    except SolaceError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "path": str(result.path),
                    "bytes": result.bytes,
                    "seconds": round(result.seconds, 3),
                    "integrity": result.integrity,
                    "pruned": [str(p) for p in result.pruned],
                }
            )
        )
        return
    click.echo(f"backup {result.path} ({result.bytes} bytes, {result.seconds:.2f} s, ok)")
    for path in result.pruned:
        click.echo(f"deleted old backup {path}")


@click.command()
@config_option
@click.argument("backup_file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--latest", is_flag=True, help="Restore the newest backup (not a pre-restore copy).")
@click.option(
    "--force", is_flag=True, help="Restore even though a running process has the database open."
)
@click.option(
    "--no-safety-copy",
    is_flag=True,
    help="Do not back up the current database before overwriting it.",
)
def restore(
    config_file: Path | None,
    backup_file: Path | None,
    latest: bool,
    force: bool,
    no_safety_copy: bool,
) -> None:
    """Bring a backup back into the database (memory.db_path).

    The backup must pass PRAGMA integrity_check. A database that another process has open (a
    running bot) is not touched without --force; stop the bot first. Unless --no-safety-copy,
    the current database is first backed up as `solace-pre-restore-<time>Z.db`.
    """
    from bot.memory.backup import default_backup_dir, restore_database

    settings = settings_or_exit(config_file)
    folder = settings.backup.dir or default_backup_dir(settings.memory.db_path)
    chosen = _choose_backup(backup_file, latest, folder)
    try:
        result = restore_database(
            chosen,
            settings.memory.db_path,
            force=force,
            safety_copy_dir=None if no_safety_copy else folder,
        )
    except SolaceError as exc:
        raise click.ClickException(str(exc)) from None
    if result.safety_copy is not None:
        click.echo(f"the previous database was saved as {result.safety_copy}")
    click.echo(f"restored {result.source} into {result.target} (integrity ok)")


def _choose_backup(backup_file: Path | None, latest: bool, folder: Path) -> Path:
    """The file named on the command line, or with --latest the newest in `folder`."""
    from bot.memory.backup import PRE_RESTORE_TAG, list_backups

    if latest and backup_file is None:
        found = [p for p in list_backups(folder) if PRE_RESTORE_TAG not in p.name]
        if not found:
            raise click.ClickException(f"no backups in {folder}")
        return found[-1]
    if backup_file is None or latest:
        raise click.UsageError("give a BACKUP_FILE or --latest (not both)")
    return backup_file
