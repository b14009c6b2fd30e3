"""Another process on the bot's SQLite file, for concurrency tests (issue 15, items 4 and 5).

`python -m tests.bot.memory.sqlite_peer MODE DB` prints "ready" once it holds what MODE says, then keeps
it until a line arrives on stdin (or stdin closes), prints "done" and exits:

- `read`: an open read transaction (a reader on an old snapshot blocks a WAL truncation);
- `lock`: the write lock (`BEGIN IMMEDIATE`), released with a committed write;
- `writer`: writes turns for a user of its own in short transactions, one every
  `WRITER_PAUSE_SECONDS` (a busy bot or audit job; a writer that re-takes the lock the instant it
  lets go can starve SQLite's polling busy handler, which no timeout fixes).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.paths import ROOT

BUSY_TIMEOUT_SECONDS = 10.0
WRITER_PAUSE_SECONDS = 0.002


def _insert_turn(conn: sqlite3.Connection, n: int) -> None:
    conn.execute(
        "INSERT INTO turns (user_key, conversation_id, role, text, created_at) "
        "VALUES ('peer-writer', 'peer', 'user', ?, ?)",
        [f"peer turn {n}", time.time()],
    )


def main(mode: str, db: str) -> None:
    """Run one peer (see the module docstring)."""
    conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    stop = threading.Event()
    if mode == "read":
        conn.execute("BEGIN")
        conn.execute("SELECT COUNT(*) FROM turns").fetchone()
    elif mode == "lock":
        conn.execute("BEGIN IMMEDIATE")
        _insert_turn(conn, 0)
    elif mode != "writer":
        raise SystemExit(f"unknown mode {mode!r}")
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    n = 0
    while not stop.is_set():
        if mode == "writer":
            n += 1
            conn.execute("BEGIN IMMEDIATE")
            _insert_turn(conn, n)
            conn.execute("COMMIT")
            stop.wait(WRITER_PAUSE_SECONDS)
        else:
            stop.wait(0.05)
    if conn.in_transaction:
        conn.execute("COMMIT")
    conn.close()
    print(f"done {n}", flush=True)


class Peer:
    """A running peer process; `with Peer("read", path):` holds it for the block."""

    def __init__(self, mode: str, db: Path) -> None:
        root = ROOT
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.bot.memory.sqlite_peer", mode, str(db)],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "ready":
            self.process.kill()
            raise RuntimeError(f"the peer did not start: {line!r}")

    def release(self) -> str:
        """Let the peer finish; returns its last line ("done N")."""
        out, _ = self.process.communicate("\n", timeout=60)
        return out.strip()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.release()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
