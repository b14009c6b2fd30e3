"""Per-person memory: one SQLite file (WAL) keyed by pseudonyms, with a right to be forgotten.

`store` (`MemoryStore`: the verbs), `records` (the rows it returns), `schema` (migrations and the
one rule for writing), `database` (`open_memory`, `migrate_database`), `keys` (the pseudonym
secret, its key check and rotation), `erasure` (`/forget`), `export` (`/export`), `consent`
(`/review`), `backup` (online backups and restore) and `cli` (`solace migrate`, `solace memory`).
"""

from bot.memory.database import migrate_database, open_memory
from bot.memory.erasure import Erasure, WalCleanup
from bot.memory.keys import resolve_secret
from bot.memory.records import StoredTurn, UserRecord
from bot.memory.schema import migrations
from bot.memory.store import BUSY_TIMEOUT_MS, MemoryStore

__all__ = [
    "BUSY_TIMEOUT_MS",
    "Erasure",
    "MemoryStore",
    "StoredTurn",
    "UserRecord",
    "WalCleanup",
    "migrate_database",
    "migrations",
    "open_memory",
    "resolve_secret",
]
