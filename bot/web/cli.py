"""`solace web`: serve the console, manage its accounts, export moderator labels."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from bot.config.options import config_option, db_option, settings_or_exit


def _open(db: Path | None, config_file: Path | None) -> tuple[Any, Path]:
    """Settings and the migrated database file (ClickException on any problem)."""
    from bot.errors import SolaceError
    from bot.web.store import migrate_web

    settings = settings_or_exit(config_file)
    try:
        path = (db or settings.memory.db_path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        migrate_web(path)
    except (SolaceError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    return settings, path


@click.group()
def web() -> None:
    """The web console for moderators, raters and admins (docs/web.md)."""


@web.command("serve")
@click.option("--host", default=None, help="Listen address (default: web.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: web.port, 8765).")
@db_option
@config_option
def serve_cmd(
    host: str | None, port: int | None, db: Path | None, config_file: Path | None
) -> None:
    """Serve the console (put a TLS reverse proxy in front of it in production)."""
    import uvicorn

    from bot.web.app import build_app

    settings, path = _open(db, config_file)
    w = settings.web
    host = host or w.host
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}; serve it only behind a TLS proxy", err=True)
    app = build_app(settings, path)
    click.echo(f"Solace console on http://{host}:{port or w.port} (database {path})")
    uvicorn.run(app, host=host, port=port or w.port, proxy_headers=True,
                forwarded_allow_ips=list(w.proxy_addresses), log_level="warning",
                server_header=False)  # fmt: skip


@web.group("user")
def user() -> None:
    """Console accounts: add, list, passwd, disable, enable."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["moderator", "rater", "admin"]), required=True,
              help="moderator: the queue; rater: studies; admin: everything.")  # fmt: skip
@click.option("--password-stdin", is_flag=True, help="Read the password from one stdin line.")
@db_option
@config_option
def user_add(name: str, role: str, password_stdin: bool, db: Path | None,
             config_file: Path | None) -> None:  # fmt: skip
    """Create an account (the password is hashed with argon2id)."""
    from bot.web.auth import add_account
    from bot.web.store import connection

    _, path = _open(db, config_file)
    password = _password(password_stdin)
    with connection(path) as conn:
        try:
            add_account(conn, name, role, password, time.time())
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"account {name.strip().lower()} ({role}) created")


@user.command("list")
@db_option
@config_option
def user_list(db: Path | None, config_file: Path | None) -> None:
    """Every account, its role and state."""
    from bot.audit.report.flagged import iso
    from bot.web.auth import list_accounts
    from bot.web.store import connection

    _, path = _open(db, config_file)
    with connection(path) as conn:
        for r in list_accounts(conn):
            state = "disabled" if r["disabled_at"] else "active"
            last = iso(r["last_login_at"]) or "never"
            click.echo(f"{r['name']}\t{r['role']}\t{state}\tlast login {last}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from one stdin line.")
@db_option
@config_option
def user_passwd(name: str, password_stdin: bool, db: Path | None, config_file: Path | None) -> None:
    """Set a new password (the account's logins end)."""
    from bot.web.auth import set_password
    from bot.web.store import connection

    _, path = _open(db, config_file)
    password = _password(password_stdin)
    with connection(path) as conn:
        try:
            set_password(conn, name.strip().lower(), password, time.time())
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"password of {name} changed; its logins ended")


@user.command("disable")
@click.argument("name")
@db_option
@config_option
def user_disable(name: str, db: Path | None, config_file: Path | None) -> None:
    """Disable an account (its logins end at once)."""
    _set_disabled(name, True, db, config_file)


@user.command("enable")
@click.argument("name")
@db_option
@config_option
def user_enable(name: str, db: Path | None, config_file: Path | None) -> None:
    """Enable a disabled account again."""
    _set_disabled(name, False, db, config_file)


def _set_disabled(name: str, disabled: bool, db: Path | None, config_file: Path | None) -> None:
    from bot.web.auth import set_disabled
    from bot.web.store import connection

    _, path = _open(db, config_file)
    with connection(path) as conn:
        try:
            set_disabled(conn, name.strip().lower(), disabled, time.time())
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"{name} {'disabled' if disabled else 'enabled'}")


@web.command("export-cases")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="JSON Lines file for `solace safety evaluate`.")  # fmt: skip
@db_option
@config_option
def export_cases_cmd(out: Path, db: Path | None, config_file: Path | None) -> None:
    """Export moderator-labelled messages (people with review consent only) as safety cases."""
    import os

    from bot.web.queue import cases_jsonl, export_cases
    from bot.web.store import connection

    _, path = _open(db, config_file)
    with connection(path) as conn:
        cases = export_cases(conn)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # redacted, still personal
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(cases_jsonl(cases))
    missed = sum(1 for c in cases if c["decision"] == "missed")
    click.echo(f"{out}: {len(cases)} cases ({missed} missed crises); "
               f"run `solace safety evaluate {out}`")  # fmt: skip


@web.command("rotate-key")
@db_option
@config_option
def rotate_key_cmd(db: Path | None, config_file: Path | None) -> None:
    """Replace the cookie-signing key: everyone is logged out."""
    from bot.web.store import connection, rotate_signing_key

    _, path = _open(db, config_file)
    with connection(path) as conn:
        rotate_signing_key(conn, time.time())
    click.echo("signing key replaced; every login has ended")
