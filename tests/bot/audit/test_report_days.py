"""The moderator report's charts bucket by calendar day (or hour) in `jobs.timezone` (issue 21).

Before the fix, buckets were rolling 24-hour windows starting at the period's start and labelled
by that start's date: a message sent on 6 December at 03:00 in a report ending 7 December 06:00
was drawn on 5 December.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bot.audit.report.build import Buckets, collect_report
from bot.audit.store import audit_connection
from bot.memory import open_memory
from tests.bot.audit.audit_data import make_settings

SECRET = b"solace-report-days-secret-0123456789"


def ts(text: str) -> float:
    """An ISO time with offset -> epoch seconds."""
    return dt.datetime.fromisoformat(text).timestamp()


def _db_with_message(tmp_path: Path, at: float) -> Path:
    db = tmp_path / "solace.db"
    store = open_memory(db, SECRET, clock=lambda: at)
    key = store.pseudonym("telegram", "1")
    store.add_turn(key, platform="telegram", role="user", text="hello", tokens=1)
    store.add_event(key, "crisis", "suicide")
    store.db.close()
    return db


def _series_by_day(db: Path, timezone: str, start: float, end: float) -> dict[str, dict[str, int]]:
    settings = make_settings(db, timezone=timezone)
    with audit_connection(db) as adb:
        data = collect_report(adb, settings, start, end, "weekly")
    labels = data["period"]["labels"]
    messages = dict(zip(labels, data["activity"]["messages_series"], strict=True))
    crisis = dict(zip(labels, data["events"]["crisis"]["series"]["suicide"], strict=True))
    return {"messages": messages, "crisis": crisis, "timezone": data["period"]["timezone"]}


def test_a_message_on_6_december_is_drawn_on_6_december(tmp_path: Path) -> None:
    sent = ts("2025-12-06T03:00:00+00:00")
    db = _db_with_message(tmp_path, sent)
    end = ts("2025-12-07T06:00:00+00:00")
    days = _series_by_day(db, "UTC", end - 7 * 86_400, end)
    assert days["messages"]["2025-12-06"] == 1
    assert days["crisis"]["2025-12-06"] == 1
    assert sum(days["messages"].values()) == 1
    # Calendar days from the period's first day to its last: 30 Nov … 7 Dec.
    assert list(days["messages"])[0] == "2025-11-30" and list(days["messages"])[-1] == "2025-12-07"


def test_days_are_calendar_days_in_the_configured_timezone(tmp_path: Path) -> None:
    sent = ts("2025-12-06T03:00:00+00:00")  # 5 December, 22:00 in New York
    db = _db_with_message(tmp_path, sent)
    end = ts("2025-12-07T06:00:00+00:00")
    days = _series_by_day(db, "America/New_York", end - 7 * 86_400, end)
    assert days["timezone"] == "America/New_York"
    assert days["messages"]["2025-12-05"] == 1
    assert days["messages"].get("2025-12-06", 0) == 0


def test_hourly_buckets_follow_local_hours_of_a_half_hour_zone(tmp_path: Path) -> None:
    sent = ts("2025-12-06T03:20:00+00:00")  # 08:50 in Kolkata (UTC+5:30)
    db = _db_with_message(tmp_path, sent)
    end = ts("2025-12-06T12:00:00+00:00")
    days = _series_by_day(db, "Asia/Kolkata", end - 86_400, end)
    assert days["messages"]["12-06 08:00"] == 1


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Berlin", "2025-03-30", 23),
        ("Europe/Berlin", "2025-10-26", 25),
        ("UTC", "2025-03-30", 24),
    ],
)
def test_a_day_with_a_clock_change_is_one_bucket(zone: str, day: str, hours: int) -> None:
    start = ts(f"{day}T00:00:00+00:00") - 3 * 86_400
    b = Buckets(start, start + 7 * 86_400, zone)
    i = b.labels().index(day)
    assert (b.bounds[i + 1] - b.bounds[i]) / 3600 == hours


def test_a_days_toxicity_is_the_mean_of_its_scored_turns(tmp_path: Path) -> None:
    """Rows are grouped by quarter hour and folded into calendar days: a day's mean is the
    mean over its turns (not a mean of quarter means), and a turn without a score for an
    attribute (NULL, as a scorer that lacks it leaves it) is left out of that attribute's mean,
    as SQL's AVG does."""
    day = ts("2025-12-06T09:00:00+00:00")
    db = _db_with_message(tmp_path, day)
    rows = [  # (time, toxicity, threat): three turns in two quarters of 6 December
        (day, 0.2, None), (day + 60, 0.4, None), (day + 3 * 3600, 0.9, 0.8),
    ]  # fmt: skip
    with audit_connection(db) as adb, adb.write() as conn:
        for i, (t, toxicity, threat) in enumerate(rows):
            conn.execute(
                "INSERT INTO audit_toxicity (user_key, conversation_id, turn_id, role, "
                "created_at, scorer, toxicity, threat, max_attribute, max_score, scored_at) "
                "VALUES ('k', 'c', ?, 'user', ?, 'lexicon', ?, ?, 'toxicity', ?, ?)",
                [i + 1, t, toxicity, threat, toxicity, t],
            )
    end = ts("2025-12-07T06:00:00+00:00")
    with audit_connection(db) as adb:
        data = collect_report(adb, make_settings(db), end - 7 * 86_400, end, "weekly")
    at = data["period"]["labels"].index("2025-12-06")
    series = data["toxicity"]["user"]["series"]
    assert series["toxicity"][at] == pytest.approx(0.5)  # (0.2 + 0.4 + 0.9) / 3
    assert series["threat"][at] == pytest.approx(0.8)  # the one turn with a threat score
    assert series["toxicity"][at - 1] is None  # a day without scored turns has no mean
