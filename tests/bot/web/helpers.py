"""Shared set-up for the web console's tests and benchmark: a real database with flagged
conversations in the audit store, console accounts, and logging in through the real forms."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from bot.config import Settings
from tests.bot.audit.audit_data import populate

PASSWORD = "correct horse battery"  # every test account's password
ACCOUNTS = {"ada": "admin", "mo": "moderator", "max": "moderator", "rita": "rater",
            "ravi": "rater"}  # fmt: skip
BASE = "http://127.0.0.1"  # the test client's origin
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
DAY = 86_400.0


@dataclass
class Console:
    """A populated database and the settings the console runs with."""

    db: Path
    settings: Settings
    population: Any


def console_settings(db: Path, **web: Any) -> Settings:
    """Echo backend, raw context, the temp database; `web` overrides the [web] section."""
    return Settings(
        model={"backend": "echo", "n_ctx": 1024},
        memory={"db_path": db, "context_representation": "raw", "retention_days": 30},
        generation={"holdback_chars": 0},
        jobs={"report_dir": db.parent / "reports"},
        web=web,
    )


def make_console(tmp: Path, conversations: int = 40, *, now: float | None = None,
                 crisis_share: float = 0.3, **web: Any) -> Console:  # fmt: skip
    """`conversations` generated over the last week, snapshotted into the audit store, with
    every account of ACCOUNTS."""
    from bot.audit.log_conversations import log_conversations
    from bot.audit.store import audit_connection
    from bot.web.auth import add_account
    from bot.web.store import connection, migrate_web

    now = time.time() if now is None else now
    db = tmp / "solace.db"
    pop = populate(db, conversations, start=now - 7 * DAY, end=now, crisis_share=crisis_share)
    settings = console_settings(db, **web)
    # The real snapshot job, without the pause after each write that leaves the lock to live
    # chats (bot.audit.yield_after_write): nobody chats here, and it would take minutes.
    with mock.patch("bot.audit.store.yield_after_write"), audit_connection(db) as adb:
        log_conversations(adb, settings, now)
    migrate_web(db)
    with connection(db) as conn:
        for name, role in ACCOUNTS.items():
            add_account(conn, name, role, PASSWORD, now - DAY)
    return Console(db, settings, pop)


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = CSRF_RE.search(html)
    if match is None:
        raise AssertionError("no CSRF token on the page")
    return match.group(1)


def login(client: Any, name: str, password: str = PASSWORD) -> Any:
    """Log in through the real form (GET for the token, then POST); returns the response."""
    page = client.get("/login")
    return client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": csrf_of(page.text), "next": "/"},
        follow_redirects=False,
    )


def consented_crisis(console: Console) -> tuple[str, int, int]:
    """A crisis conversation of a person with review consent: (cid, unflagged turn, flagged)."""
    from bot.audit.store import audit_connection

    with audit_connection(console.db) as adb:
        rows = adb.query(
            "SELECT t.conversation_id, t.turn_id, t.flagged FROM audit_turns t JOIN users u ON "
            "u.user_key = t.user_key WHERE t.role = 'user' AND u.review_consent_at IS NOT NULL "
            "AND t.conversation_id IN (SELECT conversation_id FROM events WHERE kind = 'crisis')"
            " ORDER BY t.conversation_id, t.turn_id"
        )
    for cid in dict.fromkeys(r[0] for r in rows):
        turns = [r for r in rows if r[0] == cid]
        plain = [r[1] for r in turns if not r[2]]
        flagged = [r[1] for r in turns if r[2]]
        if plain and flagged:
            return cid, plain[0], flagged[0]
    raise AssertionError("the population has no consented crisis conversation")


def client(app: Any, name: str | None = None) -> Any:
    """A Starlette test client of `app`, logged in as `name` when given."""
    from starlette.testclient import TestClient

    c = TestClient(app, base_url=BASE)
    if name is not None:
        assert login(c, name).status_code == 303
    return c


def web_cli() -> Any:
    """The `solace web` click group."""
    from bot.web.cli import web

    return web
