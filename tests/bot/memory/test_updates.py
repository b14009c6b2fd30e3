"""`UpdateClaims` (bot/memory/updates.py): one winner per update_id, per-person order across
processes, dead processes not waited for, nothing about a person kept once handled."""

from __future__ import annotations

import sqlite3

from bot.memory import open_memory
from bot.memory.updates import KEEP_SECONDS, UpdateClaims
from tests.conftest import TEST_SECRET


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _pair(tmp_path, clock, lease_s: float = 60.0):
    """Two processes' claims: two connections to one file."""
    first = open_memory(tmp_path / "m.db", TEST_SECRET)
    second = open_memory(tmp_path / "m.db", TEST_SECRET)
    a = UpdateClaims(first.db.conn, lease_s=lease_s, owner="a", clock=clock)
    b = UpdateClaims(second.db.conn, lease_s=lease_s, owner="b", clock=clock)
    return first, second, a, b


def test_each_update_has_one_winner(tmp_path) -> None:
    clock = Clock()
    first, second, a, b = _pair(tmp_path, clock)
    assert a.claim(1, "k") is True
    assert b.claim(1, "k") is False and a.claim(1, "k") is False
    assert b.claim(2, "k") is True
    first.db.close()
    second.db.close()


def test_later_update_waits_only_for_another_live_process(tmp_path) -> None:
    clock = Clock()
    first, second, a, b = _pair(tmp_path, clock, lease_s=60)
    a.claim(1, "k")
    b.claim(2, "k")
    assert b.blocked(2, "k")  # A still handles the person's earlier update
    assert not b.blocked(2, "other person")
    assert not a.blocked(1, "k")  # nothing earlier
    a.claim(3, "k")
    assert a.blocked(3, "k")  # B's update 2 is earlier and unfinished
    a.claim(10, "j")
    a.claim(11, "j")
    assert not a.blocked(11, "j")  # its own earlier claim: the adapter's lock orders those
    clock.now += 61  # A died holding update 1: after the lease nobody waits for it
    assert not b.blocked(2, "k")
    first.db.close()
    second.db.close()


def test_done_forgets_whose_update_it_was(tmp_path) -> None:
    clock = Clock()
    first, second, a, b = _pair(tmp_path, clock)
    a.claim(1, "k")
    b.claim(2, "k")
    a.done(1)
    assert not b.blocked(2, "k")
    b.done(1)  # not b's claim: changes nothing
    rows = first.db.execute(
        "SELECT update_id, user_key, claimed_by, done_at FROM telegram_updates ORDER BY 1"
    ).fetchall()
    assert rows == [(1, None, "a", clock.now), (2, "k", "b", None)]
    first.db.close()
    second.db.close()


async def test_wait_turn_gives_up_after_the_lease(tmp_path) -> None:
    clock = Clock()
    first, second, a, b = _pair(tmp_path, clock, lease_s=0.2)
    a.claim(1, "k")
    b.claim(2, "k")
    assert await b.wait_turn(2, "k") is False  # A never finished: B answers anyway
    a.done(1)
    assert await b.wait_turn(2, "k") is True
    first.db.close()
    second.db.close()


def test_claims_older_than_a_day_go(tmp_path) -> None:
    clock = Clock()
    first, second, a, _ = _pair(tmp_path, clock)
    a.claim(1, None)
    clock.now += KEEP_SECONDS + 1
    a.claim(2, None)
    ids = [r[0] for r in first.db.execute("SELECT update_id FROM telegram_updates").fetchall()]
    assert ids == [2]
    first.db.close()
    second.db.close()


def test_forget_erases_a_claim_in_flight(tmp_path) -> None:
    store = open_memory(tmp_path / "m.db", TEST_SECRET)
    key = store.pseudonym("telegram", "77")
    UpdateClaims(store.db.conn, lease_s=60).claim(5, key)
    store.forget_user(key)
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM telegram_updates").fetchone()[0] == 0
    store.db.close()
