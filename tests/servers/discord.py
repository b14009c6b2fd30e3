"""Drive the real discord.py client without Discord: a local REST server plus gateway payloads.

The client logs in with its real `HTTPClient` against `FakeDiscordREST` (aiohttp on 127.0.0.1,
reached through `discord.http.Route.BASE`, the adapter's `discord.rest_base_url`). Instead of a
gateway websocket, tests hand raw gateway dispatch payloads (MESSAGE_CREATE, GUILD_CREATE,
MESSAGE_UPDATE) to the client's own parsers — the exact code the websocket calls — so real
`discord.Message` objects are built and the real `on_message` runs. The REST server records what
the bot sent and edited, and can answer any route with a 429 carrying `retry_after`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.servers.loopback import LoopbackServer

BOT_ID = 900000000000000001
BOT_NAME = "solace"
APP_ID = 900000000000000002
GUILD_ID = 910000000000000001
GUILD_CHANNEL_ID = 910000000000000002
# A syntactically valid (fake) bot token: three dot-separated parts.
TOKEN = "OTAwMDAwMDAwMDAwMDAwMDAx.GfAkE0.fake-token-for-loopback-tests-only-xyz"


def user_payload(user_id: int, name: str, bot: bool = False) -> dict[str, Any]:
    """A Discord user object."""
    return {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
        "bot": bot,
    }


@dataclass
class SentMessage:
    """A message the bot posted, with its edit history."""

    channel_id: int
    message_id: int
    content: str
    history: list[str] = field(default_factory=list)
    reference: int | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    allowed_mentions: dict[str, Any] | None = None


class FakeDiscordREST(LoopbackServer):
    """The REST half of Discord, on loopback. `async with FakeDiscordREST() as rest:`."""

    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        self.sent: list[SentMessage] = []
        self.typing: list[int] = []
        self.rate_limited: list[str] = []
        self.bad_requests: list[str] = []
        self._failures: dict[str, deque[float]] = {}
        self._ids = itertools.count(920000000000000001)
        # Routes other modules plug in (tests/servers/discord_app.py), and path prefixes that
        # need no bot token (interaction callbacks and webhooks, as on Discord).
        self.extra_routes: list[Callable[[str, list[str]], tuple[str, Any] | None]] = []
        self.open_prefixes: set[str] = set()

    def add_routes(self, app: web.Application) -> None:
        """Every REST route of API v10."""
        app.router.add_route("*", "/api/v10/{path:.*}", self._handle)

    @property
    def base_url(self) -> str:
        """The REST base to configure as `discord.rest_base_url`."""
        return f"http://127.0.0.1:{self.port}/api/v10"

    def fail_next(self, kind: str, retry_after: float = 0.5, times: int = 1) -> None:
        """Answer the next `times` requests of `kind` ("send", "edit", "typing") with a 429."""
        self._failures.setdefault(kind, deque()).extend([retry_after] * times)

    def sent_to(self, channel_id: int) -> list[SentMessage]:
        """Messages the bot posted in `channel_id`, oldest first."""
        return [m for m in self.sent if m.channel_id == channel_id]

    # --- HTTP ---------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        parts = request.match_info["path"].strip("/").split("/")
        authorized = request.headers.get("Authorization") == f"Bot {self.token}"
        if not authorized and parts[0] not in self.open_prefixes:
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        route = self._route(request.method, parts)
        if route is None:
            self.bad_requests.append(f"{request.method} /{'/'.join(parts)}")
            return _json({"message": "404: Not Found", "code": 0}, status=404)
        kind, handler = route
        failures = self._failures.get(kind)
        if failures:
            retry_after = failures.popleft()
            self.rate_limited.append(kind)
            await self._notify()
            return _json(
                {
                    "message": "You are being rate limited.",
                    "retry_after": retry_after,
                    "global": False,
                },
                status=429,
                headers={
                    "Via": "1.1 google",  # discord.py treats a 429 without it as a Cloudflare ban
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": str(retry_after),
                    "X-RateLimit-Bucket": f"fake-{kind}",
                    "X-RateLimit-Scope": "user",
                },
            )
        result = await handler(request, parts)
        await self._notify()
        if result is None:
            return web.Response(status=204)
        return _json(
            result,
            headers={
                "X-RateLimit-Remaining": "4",
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Reset-After": "1.0",
                "X-RateLimit-Bucket": "fake-bucket",
            },
        )

    def _route(self, method: str, parts: list[str]) -> tuple[str, Any] | None:
        for extra in self.extra_routes:
            if (found := extra(method, parts)) is not None:
                return found
        if method == "GET" and parts == ["users", "@me"]:
            return "me", self._me
        if method == "GET" and parts == ["oauth2", "applications", "@me"]:
            return "app", self._app
        if len(parts) >= 3 and parts[0] == "channels":
            if method == "POST" and parts[2] == "typing":
                return "typing", self._typing
            if method == "POST" and parts[2] == "messages" and len(parts) == 3:
                return "send", self._send
            if method == "PATCH" and parts[2] == "messages" and len(parts) == 4:
                return "edit", self._edit
        return None

    async def _me(self, request: web.Request, parts: list[str]) -> dict[str, Any]:
        return {**user_payload(BOT_ID, BOT_NAME, bot=True), "verified": True, "mfa_enabled": False}

    async def _app(self, request: web.Request, parts: list[str]) -> dict[str, Any]:
        return {
            "id": str(APP_ID),
            "name": "Solace",
            "description": "",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": user_payload(1, "owner"),
            "verify_key": "0" * 64,
            "flags": 0,
        }

    async def _typing(self, request: web.Request, parts: list[str]) -> None:
        self.typing.append(int(parts[1]))
        return None

    async def _payload(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        if not request.content_type.startswith("multipart/"):
            return await request.json(), {}
        payload: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        reader = await request.multipart()
        async for part in reader:
            if part.name == "payload_json":  # type: ignore[union-attr]
                payload = json.loads(await part.text())  # type: ignore[union-attr]
            elif part.filename:  # type: ignore[union-attr]
                files[part.filename] = bytes(await part.read())  # type: ignore[union-attr]
        return payload, files

    async def _send(self, request: web.Request, parts: list[str]) -> dict[str, Any]:
        payload, files = await self._payload(request)
        content = payload.get("content") or ""
        if len(content) > 2000:
            raise web.HTTPBadRequest(text='{"message": "content too long", "code": 50035}')
        reference = (payload.get("message_reference") or {}).get("message_id")
        sent = SentMessage(
            channel_id=int(parts[1]),
            message_id=next(self._ids),
            content=content,
            history=[content],
            reference=int(reference) if reference else None,
            files=files,
            allowed_mentions=payload.get("allowed_mentions"),
        )
        self.sent.append(sent)
        return self.message_payload(sent)

    async def _edit(self, request: web.Request, parts: list[str]) -> dict[str, Any]:
        payload, _ = await self._payload(request)
        channel_id, message_id = int(parts[1]), int(parts[3])
        for sent in self.sent:
            if sent.channel_id == channel_id and sent.message_id == message_id:
                sent.content = payload.get("content", sent.content)
                sent.history.append(sent.content)
                return self.message_payload(sent)
        raise web.HTTPNotFound(text='{"message": "Unknown Message", "code": 10008}')

    def message_payload(self, sent: SentMessage) -> dict[str, Any]:
        """The message object Discord returns for a bot message."""
        return message_payload(
            sent.message_id, sent.channel_id, user_payload(BOT_ID, BOT_NAME, bot=True), sent.content
        )


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response typed exactly `application/json` (discord.py compares the header)."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def message_payload(
    message_id: int,
    channel_id: int,
    author: dict[str, Any],
    content: str,
    **extra: Any,
) -> dict[str, Any]:
    """A MESSAGE_CREATE payload as the gateway sends it."""
    return {
        "id": str(message_id),
        "channel_id": str(channel_id),
        "author": author,
        "content": content,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        **extra,
    }


class Gateway:
    """Feeds gateway dispatch payloads to a logged-in client, as its websocket would."""

    def __init__(self, client: Any, rest: FakeDiscordREST) -> None:
        self.client = client
        self.rest = rest
        self._ids = itertools.count(930000000000000001)

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Run the client's own parser for `event` (e.g. "MESSAGE_CREATE")."""
        self.client._connection.parsers[event](data)

    def add_guild(self) -> None:
        """GUILD_CREATE for one server with one text channel (fills discord.py's cache)."""
        self.dispatch(
            "GUILD_CREATE",
            {
                "id": str(GUILD_ID),
                "name": "Support circle",
                "owner_id": "1",
                "roles": [],
                "emojis": [],
                "stickers": [],
                "features": [],
                "member_count": 3,
                "members": [],
                "channels": [
                    {
                        "id": str(GUILD_CHANNEL_ID),
                        "type": 0,
                        "name": "general",
                        "position": 0,
                        "permission_overwrites": [],
                    },
                ],
                "threads": [],
                "voice_states": [],
                "presences": [],
                "large": False,
                "unavailable": False,
            },
        )

    def dm_channel(self, user_id: int) -> int:
        """The DM channel id used for `user_id` (deterministic)."""
        return 940000000000000000 + user_id

    def send(
        self,
        user_id: int,
        content: str,
        *,
        guild: bool = False,
        mention: bool = False,
        reply_to: SentMessage | None = None,
        **extra: Any,
    ) -> int:
        """A user posts a message (DM unless `guild`); returns its id."""
        message_id = next(self._ids)
        channel = GUILD_CHANNEL_ID if guild else self.dm_channel(user_id)
        if mention:
            content = f"<@{BOT_ID}> {content}"
            extra["mentions"] = [user_payload(BOT_ID, BOT_NAME, bot=True)]
        if reply_to is not None:
            extra["type"] = 19
            extra["message_reference"] = {
                "message_id": str(reply_to.message_id),
                "channel_id": str(reply_to.channel_id),
                **({"guild_id": str(GUILD_ID)} if guild else {}),
            }
            extra["referenced_message"] = self.rest.message_payload(reply_to)
        if guild:
            extra["guild_id"] = str(GUILD_ID)
            extra["member"] = {
                "roles": [],
                "joined_at": dt.datetime.now(dt.UTC).isoformat(),
                "deaf": False,
                "mute": False,
            }
        author = user_payload(user_id, f"user{user_id}")
        self.dispatch(
            "MESSAGE_CREATE", message_payload(message_id, channel, author, content, **extra)
        )
        return message_id

    def edit(self, user_id: int, message_id: int, content: str) -> None:
        """A user edits their DM (MESSAGE_UPDATE)."""
        author = user_payload(user_id, f"user{user_id}")
        payload = message_payload(message_id, self.dm_channel(user_id), author, content)
        payload["edited_timestamp"] = dt.datetime.now(dt.UTC).isoformat()
        self.dispatch("MESSAGE_UPDATE", payload)
