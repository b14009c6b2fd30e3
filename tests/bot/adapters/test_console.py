"""`solace chat` and `solace migrate` end to end, as subprocesses reading stdin."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot import texts
from bot.adapters.commands import FORGET_CONFIRM
from bot.cli import cli
from tests.environment import without_solace

SOLACE = [sys.executable, "-m", "bot"]


def run_chat(
    tmp_path: Path,
    stdin: bytes,
    *args: str,
    timeout: int = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    child_env = without_solace()
    child_env["HOME"] = str(tmp_path / "home")
    child_env["SOLACE_MEMORY__CONTEXT_REPRESENTATION"] = "raw"  # keep spaCy out of the echo tests
    child_env.update(env or {})
    return subprocess.run(
        [*SOLACE, "chat", *args],
        input=stdin,
        capture_output=True,
        cwd=tmp_path,
        env=child_env,
        timeout=timeout,
        check=False,
    )


def stored_texts(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT role, text FROM turns ORDER BY id"))


def test_two_messages_get_replies_and_memory_survives_a_restart(tmp_path):
    db = tmp_path / "chat.db"
    first = run_chat(
        tmp_path,
        b"hello there\nI had a rough day\n",
        "--backend",
        "echo",
        "--db",
        str(db),
        "--user",
        "alice",
    )
    assert first.returncode == 0, first.stderr.decode()
    out = first.stdout.decode()
    assert "not a therapist" in out  # the notice on first contact
    assert "You said: hello there" in out and "You said: I had a rough day" in out
    assert b"pseudonym.secret" in first.stderr  # the generated dev secret is announced
    second = run_chat(
        tmp_path, b"/export\n", "--backend", "echo", "--db", str(db), "--user", "alice"
    )
    assert second.returncode == 0, second.stderr.decode()
    assert "not a therapist" not in second.stdout.decode()  # same user, notice already seen
    export = json.loads(next(tmp_path.glob("solace-export-*.json")).read_text())
    turns = [t["text"] for c in export["conversations"] for t in c["turns"]]
    assert turns == [
        "hello there",
        "You said: hello there",
        "I had a rough day",
        "You said: I had a rough day",
    ]


def test_default_db_is_in_the_user_data_dir(tmp_path):
    result = run_chat(tmp_path, b"hi\n", "--backend", "echo", "--user", "bob")
    assert result.returncode == 0, result.stderr.decode()
    db = tmp_path / "home" / ".local" / "share" / "solace" / "solace.db"
    assert stored_texts(db) == [("user", "hi"), ("assistant", "You said: hi")]


def test_bad_input_gets_clear_replies_and_nothing_is_lost(tmp_path):
    db = tmp_path / "bad.db"
    huge = b"x" * 100_000
    stdin = b"\n   \n" + huge + b"\nctrl\x00\x07\x1b[2Jchars\nbroken \xff\xfe utf8\nstill here\n"
    result = run_chat(tmp_path, stdin, "--backend", "echo", "--db", str(db), "--user", "carol")
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert out.count(texts.EMPTY_MESSAGE) == 2
    assert texts.TOO_LONG in out
    assert "\x00" not in out and "\x1b" not in out
    assert "not valid UTF-8" in out
    assert "You said: still here" in out
    stored = [text for role, text in stored_texts(db) if role == "user"]
    # An over-long line is stored truncated with a marker (#15); invalid UTF-8 bytes become
    # U+FFFD, as the person is told, instead of silently vanishing ("caf\xe9" was "caf").
    assert stored[0].startswith("x" * 4000) and stored[0].endswith("too long]")
    assert "96,000 more characters were not kept" in stored[0]
    assert stored[1:] == ["ctrl[2Jchars", "broken \ufffd\ufffd utf8", "still here"]


def test_invalid_utf8_is_replaced_not_dropped(tmp_path):
    db = tmp_path / "u.db"
    result = run_chat(tmp_path, b"caf\xe9 au lait\n", "--backend", "echo", "--db", str(db))
    assert result.returncode == 0, result.stderr.decode()
    assert "replaced what I could not read with \ufffd" in result.stdout.decode()
    assert [t for r, t in stored_texts(db) if r == "user"] == ["caf\ufffd au lait"]


def test_export_never_follows_a_planted_symlink(tmp_path):
    """#15: /export wrote through a symlink planted at its predictable name, mode 0644."""
    db = tmp_path / "e.db"
    run_chat(tmp_path, b"hello\n", "--backend", "echo", "--db", str(db), "--user", "dan")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    import time as _time

    for offset in range(0, 4):  # the names the export may pick in the next seconds
        stamp = _time.strftime("%Y%m%d-%H%M%S", _time.localtime(_time.time() + offset))
        (tmp_path / f"solace-export-{stamp}.json").symlink_to(victim)
    result = run_chat(tmp_path, b"/export\n", "--backend", "echo", "--db", str(db), "--user", "dan")
    assert result.returncode == 0, result.stderr.decode()
    assert victim.read_text() == "precious"
    written = [p for p in tmp_path.glob("solace-export-*.json") if not p.is_symlink()]
    assert len(written) == 1
    assert written[0].stat().st_mode & 0o777 == 0o600
    assert "hello" in written[0].read_text()


def test_forget_and_reset_through_the_console(tmp_path):
    db = tmp_path / "f.db"
    result = run_chat(
        tmp_path,
        b"one\n/reset\ntwo\n/forget\n/forget yes\n",
        "--backend",
        "echo",
        "--db",
        str(db),
        "--user",
        "dan",
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert texts.RESET_DONE in out and texts.FORGET_DONE in out
    # A bare /forget only asks (as on the platforms); "/forget yes" erases.
    assert out.index(FORGET_CONFIRM) < out.index(texts.FORGET_DONE)
    assert stored_texts(db) == []


def test_a_bare_forget_erases_nothing(tmp_path):
    db = tmp_path / "f.db"
    result = run_chat(
        tmp_path, b"one\n/forget\n", "--backend", "echo", "--db", str(db), "--user", "dan"
    )
    assert result.returncode == 0, result.stderr.decode()
    assert FORGET_CONFIRM in result.stdout.decode()
    assert [role for role, _ in stored_texts(db)] == ["user", "assistant"]


@pytest.fixture
def cli_env(clean_env):
    """In-process CLI runs (faster than subprocesses) with a clean SOLACE_* environment."""
    return CliRunner()


def test_configuration_errors_are_clear(tmp_path, cli_env):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nbakend = 'echo'\n")
    result = cli_env.invoke(cli, ["chat", "--config", str(bad)], input="hi\n")
    assert result.exit_code == 1
    assert "unknown key 'model.bakend'" in result.output
    missing = cli_env.invoke(cli, ["chat", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    junk_db = tmp_path / "junk.db"
    junk_db.write_bytes(b"not sqlite" * 200)
    broken = cli_env.invoke(cli, ["chat", "--backend", "echo", "--db", str(junk_db)])
    assert broken.exit_code == 1 and "junk.db" in broken.output
    assert isinstance(broken.exception, SystemExit)  # a clear message, not a traceback
    assert "Traceback" not in broken.output


def test_missing_model_file_fails_at_start(tmp_path, cli_env):
    config = tmp_path / "c.toml"
    config.write_text(f"[model]\npath = '{tmp_path / 'absent.gguf'}'\n")
    args = ["chat", "--config", str(config), "--db", str(tmp_path / "m.db")]
    result = cli_env.invoke(cli, args, input="hi\n")
    assert result.exit_code == 1
    assert "absent.gguf" in result.output and "does not exist" in result.output


def test_migrate_command(tmp_path, cli_env):
    db = tmp_path / "m.db"
    first = cli_env.invoke(cli, ["migrate", "--db", str(db)])
    assert first.exit_code == 0 and "applied now: m001_initial" in first.output
    again = cli_env.invoke(cli, ["migrate", "--db", str(db)])
    assert "already applied: m001_initial" in again.output
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite" * 200)
    broken = cli_env.invoke(cli, ["migrate", "--db", str(junk)])
    assert broken.exit_code == 1 and "junk.db" in broken.output


@pytest.mark.slow
def test_chat_with_the_embedded_model(tmp_path, smollm2_gguf):
    db = tmp_path / "real.db"
    result = run_chat(
        tmp_path,
        b"I feel lonely since I moved.\nThanks for listening.\n",
        "--db",
        str(db),
        "--user",
        "erin",
        timeout=300,
        env={"SOLACE_GENERATION__MAX_NEW_TOKENS": "32"},
    )
    assert result.returncode == 0, result.stderr.decode()
    replies = [text for role, text in stored_texts(db) if role == "assistant"]
    assert len(replies) == 2 and all(r.strip() for r in replies)
