"""Application commands on the local Discord: INTERACTION_CREATE payloads in, responses recorded.

`ApplicationAPI(rest)` plugs into `FakeDiscordREST` the routes discord.py uses for interactions:
the interaction callback (`POST /interactions/{id}/{token}/callback`), follow-ups and edits of
the original response (`/webhooks/{app}/{token}...`; no bot token, as on Discord), and the
command registry (`GET`/`PUT /applications/{app}[/guilds/{id}]/commands`, every request kept in
`command_requests`). Like Discord it refuses a callback or follow-up whose token has expired
(15 minutes after the interaction's snowflake time), a second callback for one interaction, and
echoes registered commands with ids and versions but without false/empty defaults.

`Interactions(gateway, api)` builds INTERACTION_CREATE payloads (a slash command, an autocomplete,
a button press; in a DM, a server channel, a group DM or an unknown channel type) and hands them
to the client's own parser, as the gateway would.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.servers.discord import (
    APP_ID,
    BOT_ID,
    BOT_NAME,
    GUILD_CHANNEL_ID,
    GUILD_ID,
    FakeDiscordREST,
    Gateway,
    _json,
    message_payload,
    user_payload,
)

EPHEMERAL = 64
TOKEN_LIFETIME = dt.timedelta(minutes=15)
GROUP_DM_ID = 960000000000000001
UNKNOWN_CHANNEL_ID = 960000000000000002


@dataclass
class InteractionReply:
    """One request the bot made to answer an interaction.

    kind: "callback" (the first response; `type` is its callback type: 4 message, 5 deferred
    message, 6 deferred update, 7 update, 8 autocomplete choices), "followup" or "edit".
    """

    token: str
    kind: str
    type: int | None
    payload: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    message_id: int = 0

    @property
    def data(self) -> dict[str, Any]:
        """The message part: a callback's `data`, or a follow-up's / edit's whole body."""
        return (self.payload.get("data") or {}) if self.kind == "callback" else self.payload

    @property
    def content(self) -> str:
        return str(self.data.get("content") or "")

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.data.get("flags") or 0) & EPHEMERAL)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Every button in the message's action rows."""
        rows = self.data.get("components") or []
        return [c for row in rows for c in row.get("components", []) if c.get("type") == 2]

    @property
    def choices(self) -> list[dict[str, Any]]:
        """Autocomplete choices (callback type 8)."""
        return list(self.data.get("choices") or [])


def snowflake_time(snowflake: int) -> dt.datetime:
    """When Discord made the id (ms since 2015-01-01 in the top 42 bits)."""
    return dt.datetime.fromtimestamp(((snowflake >> 22) + 1420070400000) / 1000, dt.UTC)


class ApplicationAPI:
    """The interaction and command routes, plugged into a `FakeDiscordREST`."""

    def __init__(self, rest: FakeDiscordREST) -> None:
        self.rest = rest
        self.replies: list[InteractionReply] = []
        self.refused: list[tuple[str, int]] = []  # (token, HTTP status) Discord would refuse
        self.command_requests: list[tuple[str, str]] = []  # (method, "global" | "guild <id>")
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.channels: dict[str, int] = {}  # token -> channel id
        self.dead_tokens: set[str] = set()  # interactions Discord no longer knows
        self._answered: set[str] = set()
        self._ids = itertools.count(970000000000000001)
        rest.extra_routes.append(self.route)
        rest.open_prefixes.update({"interactions", "webhooks"})

    def for_token(self, token: str) -> list[InteractionReply]:
        """What the bot sent for one interaction, in order."""
        return [r for r in self.replies if r.token == token]

    async def wait_replies(self, token: str, count: int = 1, timeout: float = 20.0) -> list[Any]:
        """Wait until the bot sent `count` requests for `token`; returns them."""
        await self.rest.wait_for(lambda: len(self.for_token(token)) >= count, timeout)
        return self.for_token(token)

    # --- routing ------------------------------------------------------------------------------
    def route(self, method: str, parts: list[str]) -> tuple[str, Any] | None:
        if parts[:1] == ["interactions"] and len(parts) == 4 and parts[3] == "callback":
            return "callback", self._callback
        if parts[:1] == ["webhooks"] and len(parts) == 3 and method == "POST":
            return "followup", self._followup
        if parts[:1] == ["webhooks"] and len(parts) == 5 and method == "PATCH":
            return "edit", self._edit
        if parts[:1] == ["applications"] and parts[-1] == "commands" and method in ("GET", "PUT"):
            if len(parts) == 3:
                return "commands", self._commands
            if len(parts) == 5 and parts[2] == "guilds":
                return "commands", self._commands
        return None

    def _expired(self, token: str) -> bool:
        if token in self.dead_tokens:
            return True
        created = snowflake_time(int(token.split("-")[1]))
        return dt.datetime.now(dt.UTC) - created >= TOKEN_LIFETIME

    async def _callback(self, request: web.Request, parts: list[str]) -> Any:
        token = parts[2]
        if self._expired(token) or token in self._answered:
            status = 404 if self._expired(token) else 400
            self.refused.append((token, status))
            message = "Unknown interaction" if status == 404 else "Already acknowledged"
            return _json({"message": message, "code": 10062 if status == 404 else 40060}, status)
        self._answered.add(token)
        payload, files = await self.rest._payload(request)
        reply = self._record(token, "callback", payload, files, int(payload["type"]))
        flags = int((payload.get("data") or {}).get("flags") or 0)
        body: dict[str, Any] = {
            "interaction": {
                "id": parts[1],
                "type": 2,
                "response_message_id": str(reply.message_id),
                "response_message_loading": reply.type == 5,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            },
            "resource": {"type": reply.type},
        }
        if reply.type in (4, 5, 7):
            body["resource"]["message"] = self._message(reply)
        return body

    async def _followup(self, request: web.Request, parts: list[str]) -> Any:
        return await self._webhook(request, parts[2], "followup")

    async def _edit(self, request: web.Request, parts: list[str]) -> Any:
        return await self._webhook(request, parts[2], "edit")

    async def _webhook(self, request: web.Request, token: str, kind: str) -> Any:
        if self._expired(token):
            self.refused.append((token, 401))
            return _json({"message": "Invalid Webhook Token", "code": 50027}, 401)
        payload, files = await self.rest._payload(request)
        return self._message(self._record(token, kind, payload, files, None))

    def _record(
        self, token: str, kind: str, payload: dict[str, Any], files: dict[str, bytes], type_: Any
    ) -> InteractionReply:
        reply = InteractionReply(token, kind, type_, payload, files, next(self._ids))
        self.replies.append(reply)
        return reply

    def _message(self, reply: InteractionReply) -> dict[str, Any]:
        author = user_payload(BOT_ID, BOT_NAME, bot=True)
        channel = self.channels.get(reply.token, GUILD_CHANNEL_ID)
        extra = {"flags": int(reply.data.get("flags") or 0)}
        if reply.data.get("components"):
            extra["components"] = reply.data["components"]
        return message_payload(reply.message_id, channel, author, reply.content, **extra)

    async def _commands(self, request: web.Request, parts: list[str]) -> Any:
        scope = f"guild {parts[3]}" if len(parts) == 5 else "global"
        self.command_requests.append((request.method, scope))
        if request.method == "PUT":
            self.commands[scope] = [
                self._registered(c, scope, i) for i, c in enumerate(await request.json())
            ]
        return self.commands.get(scope, [])

    def _registered(self, command: dict[str, Any], scope: str, index: int) -> dict[str, Any]:
        """A command as Discord echoes it: ids and a version added, false/empty defaults gone."""

        def strip(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items() if v not in (False, [], {})}
            if isinstance(value, list):
                return [strip(v) for v in value]
            return value

        echoed = {
            **strip(command),
            "id": str(980000000000000001 + index),
            "application_id": str(APP_ID),
            "version": str(next(self._ids)),
            "dm_permission": True,
            "nsfw": False,
        }
        if scope != "global":
            echoed["guild_id"] = scope.split()[1]
        return echoed


class Interactions:
    """Delivers INTERACTION_CREATE payloads to the logged-in client (its own parser)."""

    def __init__(self, gateway: Gateway, api: ApplicationAPI) -> None:
        self.gateway = gateway
        self.api = api
        self._serial = itertools.count(1)

    def command(
        self, user: int, name: str, options: dict[str, str] | None = None, **where: Any
    ) -> str:
        """A slash command; returns its token. `where`: guild=True, place="group"|"unknown",
        age=timedelta (how long ago Discord created it)."""
        data = {
            "id": "980000000000000001",
            "name": name,
            "type": 1,
            "options": [{"name": k, "type": 3, "value": v} for k, v in (options or {}).items()],
        }
        return self._deliver(2, user, data, **where)

    def autocomplete(self, user: int, name: str, option: str, typed: str, **where: Any) -> str:
        """Typing `typed` into `option` of `/name`."""
        data = {
            "id": "980000000000000001",
            "name": name,
            "type": 1,
            "options": [{"name": option, "type": 3, "value": typed, "focused": True}],
        }
        return self._deliver(4, user, data, **where)

    def press(self, user: int, message: InteractionReply, custom_id: str, **where: Any) -> str:
        """`user` presses the button `custom_id` on the bot's `message`."""
        data = {"custom_id": custom_id, "component_type": 2}
        body = self.api._message(message)
        return self._deliver(3, user, data, message=body, **where)

    def _deliver(
        self,
        kind: int,
        user: int,
        data: dict[str, Any],
        *,
        guild: bool = False,
        place: str = "",
        age: dt.timedelta = dt.timedelta(0),
        message: dict[str, Any] | None = None,
    ) -> str:
        created = dt.datetime.now(dt.UTC) - age
        ms = int(created.timestamp() * 1000) - 1420070400000
        iid = (ms << 22) + next(self._serial)
        token = f"tok-{iid}"
        author = user_payload(user, f"user{user}")
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(APP_ID),
            "type": kind,
            "data": data,
            "token": token,
            "version": 1,
            "locale": "en-GB",
            "app_permissions": "0",
            "attachment_size_limit": 8 * 1024 * 1024,
            "entitlements": [],
        }
        if message is not None:
            payload["message"] = message
        if guild:
            channel_id = GUILD_CHANNEL_ID
            payload["guild_id"] = str(GUILD_ID)
            payload["context"] = 0
            payload["channel"] = {
                "id": str(GUILD_CHANNEL_ID),
                "type": 0,
                "guild_id": str(GUILD_ID),
                "name": "general",
                "position": 0,
                "permission_overwrites": [],
            }
            payload["member"] = {
                "user": author,
                "roles": [],
                "joined_at": created.isoformat(),
                "deaf": False,
                "mute": False,
                "flags": 0,
                "permissions": "0",
            }
        else:
            channel_id = {"group": GROUP_DM_ID, "unknown": UNKNOWN_CHANNEL_ID}.get(
                place, self.gateway.dm_channel(user)
            )
            channel_type = {"group": 3, "unknown": 99}.get(place, 1)
            payload["context"] = 2 if place else 1
            payload["user"] = author
            payload["channel"] = {
                "id": str(channel_id),
                "type": channel_type,
                "recipients": [author],
            }
        self.api.channels[token] = channel_id
        self.gateway.dispatch("INTERACTION_CREATE", payload)
        return token
