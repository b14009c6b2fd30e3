"""Claims on Telegram updates: processes behind one webhook URL answer each update once, and one
person's updates in order (table `telegram_updates`, migration m004; docs/platforms.md).

Telegram re-sends an update it could not deliver (a timeout, a dropped connection, a 5xx), and a
load balancer may hand the retry to another process. Every process claims an update_id with
`INSERT OR IGNORE` inside `BEGIN IMMEDIATE` before handling it: the one that inserted the row
handles it, every other drops it. The processes must share the one SQLite file, so they run on
one machine (SQLite's single writer; never a network file system).

While an update is being handled its row holds the sender's pseudonym; a process waits before a
person's next update until no *other* process still holds an earlier one of theirs (within one
process the adapter's per-person lock keeps the order). A claim older than `lease_s` no longer
holds anyone up (its process died). When done, the pseudonym is cleared: a handled claim is an
update_id and two times. Claims go after a day, Telegram's limit for keeping an update.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Callable

from bot.memory.schema import write_transaction

KEEP_SECONDS = 86_400
POLL_SECONDS = 0.05


class UpdateClaims:
    """Claim, order and finish Telegram updates on one SQLite connection.

    Args:
        conn: a connection to the memory database (migrated to m004).
        lease_s: how long a claim of another process holds up that person's later updates.
        owner: this process's name in `claimed_by`; default a random one per instance.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        lease_s: float,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conn = conn
        self._lease_s = lease_s
        self.owner = owner or secrets.token_hex(8)
        self._clock = clock

    def claim(self, update_id: int, user_key: str | None) -> bool:
        """True when this process won `update_id` (handle it); False when it was claimed before.

        Raises StorageError when the database cannot be written.
        """
        now = self._clock()
        with write_transaction(self._conn):
            self._conn.execute(
                "DELETE FROM telegram_updates WHERE claimed_at < ?", [now - KEEP_SECONDS]
            )
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO telegram_updates (update_id, user_key, claimed_by, "
                "claimed_at) VALUES (?, ?, ?, ?)",
                [update_id, user_key, self.owner, now],
            )
        return cursor.rowcount == 1

    def blocked(self, update_id: int, user_key: str) -> bool:
        """True while another live process still handles an earlier update of `user_key`."""
        row = self._conn.execute(
            "SELECT 1 FROM telegram_updates WHERE user_key = ? AND update_id < ? AND "
            "done_at IS NULL AND claimed_by != ? AND claimed_at >= ? LIMIT 1",
            [user_key, update_id, self.owner, self._clock() - self._lease_s],
        ).fetchone()
        return row is not None

    async def wait_turn(self, update_id: int, user_key: str) -> bool:
        """Wait until `blocked()` is False or `lease_s` passed; True when it was its turn."""
        give_up = time.monotonic() + self._lease_s
        while self.blocked(update_id, user_key):
            if time.monotonic() >= give_up:
                return False
            await asyncio.sleep(POLL_SECONDS)
        return True

    def done(self, update_id: int) -> None:
        """Mark `update_id` handled and forget whose it was."""
        with write_transaction(self._conn):
            self._conn.execute(
                "UPDATE telegram_updates SET done_at = ?, user_key = NULL "
                "WHERE update_id = ? AND claimed_by = ?",
                [self._clock(), update_id, self.owner],
            )
