"""Per-person memory: one SQLite file (WAL) keyed by pseudonyms, with a right to be forgotten.

`store` (`MemoryStore`: the verbs), `records` (the rows it returns), `schema` (migrations and the
one rule for writing), `database` (`open_memory`, `migrate_database`), `keys` (the pseudonym
secret, its key check and rotation), `erasure` (`/forget`), `export` (`/export`), `risk`
(the conversation-level risk row), `consent`
(`/review`), `backup` (online backups and restore) and `cli` (`solace memory`; `solace migrate`
is `bot.migrate`).
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from bot.memory.database import (
        migrate_database as migrate_database,
        open_memory as open_memory,
    )
    from bot.memory.erasure import (
        Erasure as Erasure,
        WalCleanup as WalCleanup,
    )
    from bot.memory.keys import resolve_secret as resolve_secret
    from bot.memory.records import (
        StoredTurn as StoredTurn,
        UserRecord as UserRecord,
    )
    from bot.memory.risk import StoredRisk as StoredRisk
    from bot.memory.schema import migrations as migrations
    from bot.memory.store import (
        BUSY_TIMEOUT_MS as BUSY_TIMEOUT_MS,
        MemoryStore as MemoryStore,
    )

__getattr__, __dir__ = lazy_exports(__name__)
