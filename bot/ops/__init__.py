"""Operating a deployment: `health` (can this deployment answer people? checks, never secrets)
and `cli` (`solace health`, `solace backup`, `solace restore`; the backups themselves are
`bot.memory.backup`)."""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from bot.ops.health import (
        Check as Check,
        as_json as as_json,
        healthy as healthy,
        run_checks as run_checks,
    )

__getattr__, __dir__ = lazy_exports(__name__)
