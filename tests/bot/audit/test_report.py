"""The moderator report: rendered in headless Chromium (text and a phone-sized screenshot),
escaped, free of raw ids and unredacted emails, and posted through the real Telegram and
Discord clients to loopback fakes."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.audit.jobs import JobContext, run_job
from bot.audit.report.build import collect_report, publish_report, summary_text
from bot.audit.report.render import render_html
from bot.audit.store import audit_connection
from tests.bot.audit.audit_data import (
    DAY,
    EMAIL,
    GOOD_JUDGE,
    INJECTION,
    NOW,
    PLATFORM_ID,
    ScriptedJudge,
    make_settings,
    populate,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SECTIONS = (
    "Users and messages", "Crisis events by category", "Reply-guard events", "Toxicity",
    "Judge scores", "Flagged conversations", "Data quality",
)  # fmt: skip


def chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a throw-away profile; skips when it is not installed."""
    if not Path(CHROMIUM).is_file():
        pytest.skip("chromium is not installed (scripts/install-system-deps.sh installs it)")
    profile = tmp / "chromium-profile"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


@pytest.fixture
async def audited(tmp_path: Path) -> tuple[Path, Any]:
    """A week of 200 generated conversations with every job run once (one of them failing)."""
    from evaluation.localserver import build_app, start

    db = tmp_path / "solace.db"
    populate(db, 200, start=NOW - 7 * DAY, end=NOW, toxic_bot_share=0.05)
    judge = ScriptedJudge(GOOD_JUDGE)
    runner, port = await start(build_app(judge))
    try:
        settings = make_settings(
            db, judge_base_url=f"http://127.0.0.1:{port}/v1", judge_model="judge-test-model",
            judge_conversations=12,
        )  # fmt: skip
        ctx = JobContext(settings, db, clock=lambda: NOW - 60)
        for job in ("log-conversations", "toxicity", "judge"):
            assert (await run_job(ctx, job)).ok
        broken = make_settings(db, toxicity_scorer="detoxify")  # no checkpoint: fails
        assert not (await run_job(JobContext(broken, db, clock=lambda: NOW - 30), "toxicity")).ok
    finally:
        await runner.cleanup()
    return db, settings


async def test_report_renders_on_a_phone_in_chromium(audited: tuple[Path, Any], tmp_path: Path):
    db, settings = audited
    (html_path, json_path), posted = await publish_report(
        db, settings, NOW - 7 * DAY, NOW, "weekly", tmp_path / "reports", post=False
    )
    assert posted == []
    data = json.loads(json_path.read_text())
    page = html_path.read_text()
    # No raw platform id, unredacted email or live markup from user text anywhere in the file.
    assert PLATFORM_ID not in page and EMAIL not in page and "<script" not in page
    assert html_lib.escape("<script>", quote=False) in page  # the injection shows as text
    assert PLATFORM_ID not in json_path.read_text() and EMAIL not in json_path.read_text()

    shot = tmp_path / "report.png"
    chromium([f"--screenshot={shot}", "--window-size=412,915", html_path.as_uri()], tmp_path)
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = chromium(["--dump-dom", html_path.as_uri()], tmp_path).stdout
    text = re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", dom)))
    for heading in SECTIONS:
        assert heading in text, heading
    a = data["activity"]
    assert f"{a['users_active']:,} active users" in text
    assert f"{a['messages_user']:,} messages from people" in text
    assert f"{data['events']['crisis']['total']} crisis events" in text
    assert data["judge"]["judged"] == 12 and "Judge model: judge-test-model" in text
    assert "solace-lexicon" in text  # the scorer's name
    assert "ToxicityError" in text  # the failed run, in the data-quality section
    assert "no review consent" in text  # skipped items and why
    assert INJECTION.split(">")[0] + ">" in text  # visible as literal text, not run
    assert '<meta name="viewport"' in page
    # Flagged conversations: most serious first, crisis ones with redacted excerpts.
    flagged = data["flagged"]
    assert flagged and flagged[0]["reasons"][0].startswith("crisis screen")
    assert [f["priority"] for f in flagged] == sorted(
        (f["priority"] for f in flagged), reverse=True
    )
    assert all(f["reviewable"] for f in flagged if f["reasons"][0].startswith("crisis"))
    assert all(len(f["key"]) == 12 for f in flagged)
    with audit_connection(db) as adb:
        keys = [r[0] for r in adb.query("SELECT user_key FROM users")]
    assert not any(k in page for k in keys)  # only 12-character prefixes


def test_empty_period_and_hostile_values_are_escaped(tmp_path: Path) -> None:
    db = tmp_path / "solace.db"
    populate(db, 0, start=NOW - DAY, end=NOW)
    settings = make_settings(db)
    with audit_connection(db) as adb:
        data = collect_report(adb, settings, NOW - DAY, NOW, "daily")
    assert data["activity"]["users_active"] == 0 and data["flagged"] == []
    # Clock hours: a 24-hour period starting mid-hour (NOW is not on the hour) touches 25.
    assert len(data["period"]["labels"]) == 25
    data["toxicity"]["scorers"] = ['<img src=x onerror="alert(1)">']
    data["data_quality"]["failures"] = [{"job": "x", "time": "t", "error": "</table><b>"}]
    page = render_html(data)
    assert "<img src=x" not in page and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
    assert "</table><b>" not in page
    for empty in ("No crisis events in this period.", "No conversations were judged",
                  "No conversations were flagged in this period."):  # fmt: skip
        assert empty in page
    summary = summary_text(data)
    assert "Crisis events 0" in summary and "<" not in summary


async def test_report_is_posted_to_a_telegram_moderator_chat(
    audited: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.servers.telegram import TOKEN, FakeTelegramServer

    db, settings = audited
    async with FakeTelegramServer() as server:
        monkeypatch.setenv("SOLACE_TELEGRAM_TOKEN", TOKEN)
        posting = make_settings(db, report_telegram_chat_id="-1001234")
        posting = posting.model_copy(update={"telegram": posting.telegram.model_copy(
            update={"base_url": server.base_url, "base_file_url": server.base_file_url})})  # fmt: skip
        posting = type(posting)(**{**posting.model_dump(), "telegram_token": TOKEN})
        (html_path, _), posted = await publish_report(
            db, posting, NOW - DAY, NOW, "daily", tmp_path / "out"
        )
        assert posted == ["telegram"]
        docs = server.sent_to(-1001234)
        assert len(docs) == 1 and docs[0].document == html_path.read_bytes()
        assert docs[0].file_name == html_path.name
        caption = server.calls_of("sendDocument")[0]["caption"]
        assert caption.startswith("Solace moderator report (daily)") and "Crisis events" in caption
        assert PLATFORM_ID not in caption and EMAIL not in caption


async def test_report_is_posted_to_a_discord_moderator_channel(
    audited: tuple[Path, Any], tmp_path: Path
) -> None:
    import discord

    from tests.servers.discord import TOKEN, FakeDiscordREST

    db, _ = audited
    original = discord.http.Route.BASE
    try:
        async with FakeDiscordREST() as rest:
            base = make_settings(db, report_discord_channel_id="930000000000000001",
                                 report_post_html=True)  # fmt: skip
            settings = type(base)(**{**base.model_dump(), "discord_token": TOKEN,
                                     "discord": {"rest_base_url": rest.base_url}})  # fmt: skip
            (html_path, _), posted = await publish_report(
                db, settings, NOW - DAY, NOW, "daily", tmp_path / "out"
            )
            assert posted == ["discord"]
            sent = rest.sent_to(930000000000000001)
            assert len(sent) == 1 and sent[0].content.startswith("Solace moderator report")
            assert sent[0].files == {html_path.name: html_path.read_bytes()}
            assert sent[0].allowed_mentions == {"parse": []}
    finally:
        discord.http.Route.BASE = original


def test_cli_report_writes_html_and_json(
    audited: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.cli import cli

    db, _ = audited
    monkeypatch.delenv("SOLACE_CONFIG", raising=False)
    out = tmp_path / "cli-reports"
    result = CliRunner().invoke(cli, ["audit", "report", "--since", "3650d", "--out", str(out),
                                      "--db", str(db)])  # fmt: skip
    assert result.exit_code == 0, result.output
    html_file = next(out.glob("*.html"))
    data = json.loads(next(out.glob("*.json")).read_text())
    assert data["activity"]["users_active"] == 200
    assert f"html: {html_file}" in result.output
    assert oct(html_file.stat().st_mode & 0o777) == "0o600"
