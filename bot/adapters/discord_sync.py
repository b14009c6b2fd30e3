"""Registering the slash commands with Discord: compare first, overwrite only on a difference.

`sync_commands(client)` reads what Discord has registered (one GET per scope), compares it with
this version's `CommandTree` in a canonical form (Discord adds ids and versions and leaves out
defaults such as `required: false`), and sends the bulk overwrite (`PUT .../commands`, what
`CommandTree.sync` sends) only when they differ. Running it on every start-up therefore costs one
GET, never the re-registration Discord rate-limits. The scope is global, or the servers in
`discord.command_guild_ids` (registered there instantly; for testing). `solace discord sync`
(`discord_cli.py`) is the operator command; `discord.sync_commands = true` runs the same at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# What Discord adds to a registered command, or keeps only for its own bookkeeping.
IGNORED_KEYS = frozenset(
    {"id", "application_id", "version", "guild_id", "dm_permission", "handler"}
)
GLOBAL_ONLY_KEYS = ("contexts", "integration_types")  # Discord ignores them on server commands


@dataclass(frozen=True, slots=True)
class ScopeSync:
    """The outcome for one scope ("global" or "guild <id>").

    Args:
        status: "unchanged", "updated" (overwritten now) or "differs" (a check found a change).
        added / removed / changed: command names this version adds, drops or defines otherwise.
    """

    scope: str
    status: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()


def _empty(value: Any) -> bool:
    return value is None or value is False or value == [] or value == {}


def _clean(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {
            k: _clean(v, k)
            for k, v in sorted(value.items())
            if k not in IGNORED_KEYS and not _empty(v)
        }
    if isinstance(value, list):
        items = [_clean(v) for v in value]
        return sorted(items) if key in GLOBAL_ONLY_KEYS else items
    if key == "default_member_permissions":
        return str(value)  # Discord answers with a string; discord.py may send one too
    return value


def canonical(commands: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Commands by name, without Discord's additions and defaults (comparable both ways)."""
    return {str(c["name"]): _clean(c) for c in commands}


def local_payload(tree: Any, *, guild: bool) -> list[dict[str, Any]]:
    """This version's commands as Discord's JSON (server commands carry no install contexts)."""
    payload = [command.to_dict(tree) for command in tree.get_commands()]
    if guild:
        for command in payload:
            for key in GLOBAL_ONLY_KEYS:
                command.pop(key, None)
    return payload


def compare(local: list[dict[str, Any]], remote: list[dict[str, Any]]) -> dict[str, tuple]:
    """Names added, removed and changed going from `remote` (registered) to `local`."""
    mine, theirs = canonical(local), canonical(remote)
    return {
        "added": tuple(sorted(set(mine) - set(theirs))),
        "removed": tuple(sorted(set(theirs) - set(mine))),
        "changed": tuple(sorted(n for n in set(mine) & set(theirs) if mine[n] != theirs[n])),
    }


async def sync_commands(client: Any, *, apply: bool = True) -> list[ScopeSync]:
    """Compare every scope and (with `apply`) overwrite those that differ. Needs a logged-in client."""
    http, app_id = client.http, client.application_id
    guild_ids = client.settings.discord.command_guild_ids
    results = []
    for guild_id in guild_ids or (None,):
        local = local_payload(client.tree, guild=guild_id is not None)
        if guild_id is None:
            scope, remote = "global", await http.get_global_commands(app_id)
        else:
            scope, remote = f"guild {guild_id}", await http.get_guild_commands(app_id, guild_id)
        diff = compare(local, remote)
        if not any(diff.values()):
            results.append(ScopeSync(scope, "unchanged"))
            continue
        if apply:
            if guild_id is None:
                await http.bulk_upsert_global_commands(app_id, payload=local)
            else:
                await http.bulk_upsert_guild_commands(app_id, guild_id, payload=local)
        results.append(ScopeSync(scope, "updated" if apply else "differs", **diff))
    return results


def describe(result: ScopeSync) -> str:
    """One line for the operator."""
    parts = [f"{label} {', '.join(names)}" for label, names in _changes(result) if names]
    tail = f" ({'; '.join(parts)})" if parts else ""
    return f"{result.scope}: {result.status}{tail}"


def _changes(result: ScopeSync) -> list[tuple[str, tuple[str, ...]]]:
    return [("added", result.added), ("removed", result.removed), ("changed", result.changed)]
