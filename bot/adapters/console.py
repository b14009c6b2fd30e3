"""`solace chat`: a terminal chat with the same engine, memory and safety as the platforms.

Reads one message per line (interactively with line editing, or piped), streams the reply as it
comes, and understands /reset /forget /export /privacy /help /country /quit. Bytes on stdin that
are not UTF-8 become U+FFFD (and the person is told); control characters are dropped by the
engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import click

from bot.config import config_option

logger = logging.getLogger(__name__)

PLATFORM = "console"
REPLY_PREFIX = "solace> "
USER_PROMPT = "you> "
QUIT_COMMANDS = frozenset({"/quit", "/exit"})
REPLACEMENT_CHAR = "\ufffd"
_UNDECODABLE_RE = re.compile("[\udc80-\udcff]")
EXPORT_NAME_ATTEMPTS = 5
UNDECODABLE_NOTICE = (
    "(Part of that line was not valid UTF-8 text; I replaced what I could not read with \ufffd.)"
)
EXPORT_FAILED = "I couldn't write your export file here ({reason}); nothing was written."


def _read_line(stream: TextIO, interactive: bool) -> str | None:
    """One line without its newline, or None at end of input."""
    if interactive:
        try:
            return input(USER_PROMPT)
        except EOFError:
            return None
    line = stream.readline()
    return None if line == "" else line.rstrip("\n")


def replace_undecodable(text: str) -> tuple[str, bool]:
    """stdin is read with surrogateescape: each byte that was not UTF-8 became a lone surrogate.
    Returns the text with each of them replaced by U+FFFD, and whether there were any."""
    if text.isascii():
        return text, False
    replaced = _UNDECODABLE_RE.sub(REPLACEMENT_CHAR, text)
    return replaced, replaced != text


def _write_private(data: bytes, directory: Path) -> Path:
    """Write the user's /export file, readable only by them, in `directory`; returns its path.

    The file is new (O_EXCL: never an existing file or one planted at the name), never reached
    through a symbolic link (O_NOFOLLOW), and mode 0600 from the moment it exists.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for attempt in range(EXPORT_NAME_ATTEMPTS):
        suffix = "" if attempt == 0 else f"-{secrets.token_hex(3)}"
        path = directory / f"solace-export-{stamp}{suffix}.json"
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            continue  # something is already there (maybe planted): pick another name
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            handle.write(data)
        return path
    raise OSError(f"could not create a new export file in {directory}")


async def _reply(engine: Any, text: str, user_id: str, out: TextIO) -> None:
    """Stream one reply (or a command's answer) to `out`."""
    from bot.adapters.commands import parse_command, run_command
    from bot.input_text import clean_text
    from bot.messages import IncomingMessage

    command = parse_command(clean_text(text))
    out.write(REPLY_PREFIX)
    if command is not None:
        # The platforms' dispatcher: /forget asks first and erases only on "/forget yes".
        name, args = command
        reply = await run_command(
            engine, name, args, platform=PLATFORM, user_id=user_id, private=True, admin=False
        )
        if reply.attachment is not None:  # /export: a file beside the user, not an upload
            try:
                path = _write_private(reply.attachment[1], Path.cwd())
            except OSError as exc:
                out.write(EXPORT_FAILED.format(reason=exc.strerror or exc) + "\n")
                return
            out.write(f"Your data is in {path} (readable only by you).\n")
        else:
            out.write(f"{reply.text}\n")
        return
    msg = IncomingMessage(PLATFORM, user_id, text)
    async with contextlib.aclosing(engine.respond(msg)) as stream:
        async for piece in stream:
            out.write(piece)
            out.flush()
    out.write("\n")


async def run_console(engine: Any, user_id: str, stdin: TextIO, out: TextIO) -> int:
    """The read-reply loop; returns the number of messages handled."""
    interactive = stdin.isatty() and out.isatty()
    warming = asyncio.create_task(engine.warm_up())  # while the person types the first line
    handled = 0
    while True:
        line = await asyncio.to_thread(_read_line, stdin, interactive)
        if line is None or line.strip().lower() in QUIT_COMMANDS:
            break
        line, undecodable = replace_undecodable(line)
        if undecodable:
            out.write(f"{REPLY_PREFIX}{UNDECODABLE_NOTICE}\n")
        await warming
        await _reply(engine, line, user_id, out)
        out.flush()
        handled += 1
    warming.cancel()
    return handled


@click.command()
@click.option(
    "--backend",
    type=click.Choice(["llama-cpp", "llama-server", "openai", "echo"]),
    default=None,
    help="Model backend (default: model.backend from settings; auto = llama-cpp, in-process).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file (default: ~/.local/share/solace/solace.db or SOLACE_MEMORY__DB_PATH).",
)
@config_option
@click.option("--user", default=None, help="Your user id in memory (default: your OS user).")
def chat(backend: str | None, db: Path | None, config_file: Path | None, user: str | None) -> None:
    """Chat with Solace in the terminal; one message per line, piped input works too."""
    from bot.backends import close_backend
    from bot.config import load_settings
    from bot.engine import build_engine
    from bot.errors import SolaceError

    overrides: dict[str, Any] = {}
    if backend:
        overrides["model"] = {"backend": backend}
    if db:
        overrides["memory"] = {"db_path": db}
    for stream in (sys.stdin, sys.stdout):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape" if stream is sys.stdin else "replace")
    interactive = sys.stdin.isatty()
    try:
        settings = load_settings(config_file, **overrides)
        if interactive:
            click.echo(f"Loading the {settings.model.backend} backend...", err=True)
        engine = build_engine(settings, allow_secret_file=True)
    except SolaceError as exc:
        raise click.ClickException(str(exc)) from exc
    if interactive:
        click.echo("Solace is listening. /help lists commands; Ctrl-D or /quit ends.", err=True)
    try:
        asyncio.run(run_console(engine, user or getpass.getuser(), sys.stdin, sys.stdout))
    except KeyboardInterrupt:
        click.echo("\nTake care.", err=True)
    finally:
        close_backend(engine.backend)
        engine.memory.db.close()
