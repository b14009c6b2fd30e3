"""A rater's study chat (bot/web/study_routes.py, eval_engine.py, studies.py) through the real
engine, over a real SQLite file with Starlette's test client: a crisis in a rater's message gets
the safety layer's fixed reply (the model is never asked), recorded as the turn's safety event
and counted on the results page and by `solace eval human`."""

from __future__ import annotations

import time
from typing import Any

from click.testing import CliRunner
from markupsafe import escape

from bot.safety.layer import SafetyLayer
from bot.safety.screen import screen_message
from bot.web import studies
from bot.web.store import connection
from tests.bot.web.helpers import Console, client, csrf_of

CRISIS = "Honestly I want to end it all tonight."
ORDINARY = "I have felt lonely since I moved."


def test_a_crisis_in_a_study_chat_gets_the_fixed_reply_not_the_model(
    app: Any, console: Console
) -> None:
    with connection(console.db) as conn:
        studies.create_interactive(
            conn, "week", "A hard week", [{"name": "one", "backend": "echo"},
                                          {"name": "two", "backend": "echo"}],
            ["loneliness"], 1, None, time.time())  # fmt: skip
    rater = client(app, "rita")
    token = csrf_of(rater.get("/studies/week").text)
    chat = str(rater.post("/studies/week/start", data={"csrf_token": token}).url)
    rater.post(chat + "/message", data={"csrf_token": token, "text": ORDINARY})
    page = rater.post(chat + "/message", data={"csrf_token": token, "text": CRISIS}).text

    screen = screen_message(CRISIS)
    assert screen.crisis
    fixed = SafetyLayer().crisis_reply(screen)
    assert str(escape(fixed.splitlines()[0])) in page  # the safety layer's own words (escaped)
    assert f"You said: {ORDINARY}" in page  # the echo model answered the ordinary message
    assert f"You said: {CRISIS}" not in page  # ... but was never asked about the crisis
    with connection(console.db) as conn:
        replies = conn.execute(
            "SELECT text, event FROM web_eval_turns WHERE role = 'assistant' ORDER BY id"
        ).fetchall()
    assert [r["event"] for r in replies] == [None, f"crisis:{screen.category}"]
    assert replies[1]["text"] == fixed.strip()

    from evaluation.cli import eval_group

    shown = CliRunner().invoke(eval_group, ["human", "week", "--db", str(console.db)])
    assert shown.exit_code == 0, shown.output
    assert "crisis 1" in shown.output
