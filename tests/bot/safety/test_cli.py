"""`solace safety` (bot.safety.cli): screen, evaluate, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tests.paths import SAFETY_CASES

# --- CLI ------------------------------------------------------------------------------------------


def test_cli_screen_prints_one_json_object_per_line() -> None:
    from bot.cli import cli

    stdin = "I want to kill myself\nI'm not suicidal, just tired\n\n" + "x" * 100_000 + "\n"
    result = CliRunner().invoke(cli, ["safety", "screen"], input=stdin)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0] == {"crisis": True, "category": "suicide", "matched": "suicide/kill_self"}
    assert [r["crisis"] for r in rows[1:]] == [False, False, False]


def test_cli_evaluate_and_friends() -> None:
    from bot.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["safety", "evaluate", str(SAFETY_CASES / "suicide.jsonl")])
    assert result.exit_code == 0, result.output
    assert "| suicide | 1.00" in result.output  # recall per category, with an interval
    guard = runner.invoke(cli, ["safety", "guard"], input="You should kill yourself\nHello\n")
    assert [json.loads(x)["ok"] for x in guard.output.splitlines()] == [False, True]
    reply = runner.invoke(cli, ["safety", "reply", "suicide", "--country", "IE"])
    assert "116 123" in reply.output
    assert "GB" in runner.invoke(cli, ["safety", "hotlines"]).output
    for name in ("screen", "evaluate", "guard", "reply", "hotlines", "train-semantic"):
        assert runner.invoke(cli, ["safety", name, "--help"]).exit_code == 0


def test_cli_evaluate_names_a_bad_case_file(tmp_path: Path) -> None:
    from bot.cli import cli

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi"}\n')
    result = CliRunner().invoke(cli, ["safety", "evaluate", str(bad)])
    assert result.exit_code != 0 and "bad.jsonl:1" in result.output
