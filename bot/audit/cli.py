"""`solace audit`: run a scheduled job by hand, write a report, show job state."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import click

from bot.audit.names import JOB_NAMES, STATE_ROWS
from bot.config import config_option, db_option

DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_duration(text: str) -> float:
    """ "7d", "24h", "90m", "2w", "3600s" -> seconds; a clear error otherwise."""
    match = DURATION_RE.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r}: use a number and a unit s, m, h, d or w, e.g. 7d")
    seconds = float(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise click.BadParameter("the duration must be more than zero")
    return seconds


def _open(db: Path | None, config_file: Path | None) -> tuple[Any, Path]:
    """Settings and the migrated database file (a clear ClickException when either fails)."""
    from bot.config import load_settings
    from bot.errors import SolaceError
    from bot.memory import migrate_database
    from bot.memory.keys import require_file_secret

    try:
        settings = load_settings(config_file)
        path = (db or settings.memory.db_path).expanduser()
        if not path.is_file():
            raise click.ClickException(f"{path}: no such database (has the bot run yet?)")
        migrate_database(path)
        if settings.pseudonym_secret is not None:  # the jobs need no secret, but a wrong one
            require_file_secret(path, settings.pseudonym_secret.get_secret_value().encode())
    except SolaceError as exc:
        raise click.ClickException(str(exc)) from exc
    return settings, path


@click.group()
def audit() -> None:
    """Moderator audits: scheduled jobs run by hand, reports, job state (docs/audits.md)."""


@audit.command("run")
@click.argument("job", type=click.Choice(JOB_NAMES))
@click.option(
    "--period",
    type=click.Choice(["daily", "weekly"]),
    default="daily",
    help="For `report`: which report to write.",
)
@db_option
@config_option
def run_cmd(job: str, period: str, db: Path | None, config_file: Path | None) -> None:
    """Run one job now, exactly as the scheduler would (same lock, state and log)."""
    from bot.audit.jobs import JobContext, run_job

    settings, path = _open(db, config_file)
    ctx = JobContext(settings, path)
    kwargs = {"period": period} if job == "report" else {}
    outcome = asyncio.run(run_job(ctx, job, **kwargs))
    if outcome.busy:
        raise click.ClickException(f"{job} is running elsewhere (its lease is held); try later")
    if not outcome.ok:
        raise click.ClickException(f"{job} failed: {outcome.error}")
    result = outcome.result
    assert result is not None  # ok outcomes carry a result
    click.echo(f"{job}: {result.items} items, {result.skipped} skipped")
    for key, value in sorted(result.detail.items()):
        click.echo(f"  {key}: {value}")


@audit.command("report")
@click.option("--since", default="7d", show_default=True, help="Period length: 24h, 7d, 2w …")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the HTML and JSON (default: jobs.report_dir or reports/ beside the db).",
)
@click.option("--post/--no-post", default=False, help="Also post to the moderator chat(s).")
@db_option
@config_option
def report_cmd(
    since: str, out: Path | None, post: bool, db: Path | None, config_file: Path | None
) -> None:
    """Write the moderator report for the last SINCE (HTML + JSON)."""
    from bot.audit.report.build import publish_report
    from bot.errors import SolaceError

    seconds = parse_duration(since)
    settings, path = _open(db, config_file)
    end = time.time()
    try:
        paths, posted = asyncio.run(
            publish_report(path, settings, end - seconds, end, f"last-{since.strip()}", out, post)
        )
    except (SolaceError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"html: {paths[0]}\njson: {paths[1]}")
    if posted:
        click.echo(f"posted to: {', '.join(posted)}")


@audit.command("status")
@db_option
@config_option
def status_cmd(db: Path | None, config_file: Path | None) -> None:
    """Each job's last success, consecutive failures, cursor and lease."""
    from bot.audit.report.flagged import iso
    from bot.audit.state import load_state
    from bot.audit.store import audit_connection

    _, path = _open(db, config_file)
    with audit_connection(path) as adb:
        for name in STATE_ROWS:
            s = load_state(adb, name)
            lease = f", running (lease until {iso(s.lease_until)})" if s.lease_owner else ""
            click.echo(
                f"{name}: last success {iso(s.last_success_at) or 'never'}, "
                f"{s.failures} failures, cursor {s.cursor or '-'}{lease}"
            )
