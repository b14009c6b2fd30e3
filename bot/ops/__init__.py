"""Operating a deployment: `health` (can this deployment answer people? checks, never secrets)
and `cli` (`solace health`, `solace backup`, `solace restore`; the backups themselves are
`bot.memory.backup`)."""

from bot.ops.health import Check, as_json, healthy, run_checks

__all__ = ["Check", "as_json", "healthy", "run_checks"]
