"""Load: 50 simulated users x 20 messages through the real Telegram path (echo backend).

Every message must be answered exactly once, in order, every turn stored, and nothing may fail.
No timing assertions: the time this takes is reported by bench/bench_adapters.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.servers.rigs import load_text, run_load, telegram_rig

USERS = 50
MESSAGES_PER_USER = 20

pytestmark = pytest.mark.timeout(600)


async def test_50_users_x_20_messages(memory, tmp_path: Path, caplog) -> None:
    # No per-user cap: 20 messages arrive at once from each simulated user.
    with caplog.at_level(logging.WARNING):
        async with telegram_rig(
            memory, tmp_path / "memory.db", access={"messages_per_minute": 0}
        ) as rig:
            await run_load(rig, USERS, MESSAGES_PER_USER)
    for user in range(1, USERS + 1):
        replies = rig.replies(user)
        assert len(replies) == MESSAGES_PER_USER, f"user {user}: {len(replies)} replies"
        for index, reply in enumerate(replies):
            assert reply.endswith(f"You said: {load_text(user, index)}"), (user, index)
        key = memory.pseudonym("telegram", str(user))
        turns = memory.recent_turns(key, 1000)
        assert len(turns) == 2 * MESSAGES_PER_USER
    assert memory.stats()["turns"] == 2 * USERS * MESSAGES_PER_USER
    assert rig.server.bad_requests == [] and rig.server.rate_limited == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
