"""The real bot (engine + adapter) wired to a loopback server, for tests and the benchmarks.

`telegram_rig` runs the real python-telegram-bot Application against `FakeTelegramServer`,
`discord_rig` logs the real discord.py client in against `FakeDiscordREST` and feeds it gateway
payloads. Both use the echo backend unless given one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tests.servers.discord import FakeDiscordREST, Gateway, SentMessage as DiscordMessage
from tests.servers.discord_app import ApplicationAPI, Interactions
from tests.servers.telegram import FakeTelegramServer, SentMessage as TelegramMessage

# --- Telegram ---------------------------------------------------------------------------------


@dataclass
class TelegramRig:
    """The fake server plus the real Application and Engine talking to it."""

    server: FakeTelegramServer
    engine: Any
    settings: Any

    async def say(self, user: int, text: str, **kwargs: Any) -> str:
        """Send `text` as `user` and wait for the echo reply; returns the reply's final text."""
        await self.server.send_text(user, text, **kwargs)
        chat = kwargs.get("chat_id", user)
        sent = await self.reply_ending(chat, f"You said: {text}")
        return sent.text or ""

    def replies(self, chat_id: int) -> list[str]:
        """Final texts of the bot's text messages in `chat_id`."""
        return [m.text for m in self.server.sent_to(chat_id) if m.text is not None]

    async def reply_ending(
        self, chat_id: int, ending: str, timeout: float = 20.0
    ) -> TelegramMessage:
        """Wait for a bot message in `chat_id` whose text ends with `ending`."""

        def find() -> TelegramMessage | None:
            for sent in self.server.sent_to(chat_id):
                if sent.text is not None and sent.text.endswith(ending):
                    return sent
            return None

        await self.server.wait_for(lambda: find() is not None, timeout)
        found = find()
        assert found is not None
        return found


# The rigs test the adapters' mechanics with made-up texts ("after the restart", "calm0 calm1
# ..."), and whether the learned semantic layer asks a check-in after one of them is a property
# of the artifact of the day, not of the adapter: rigs screen with the rules unless a test
# passes safety={"semantic": True} (test_semantic_layer_through_telegram does).
SEMANTIC_OFF = {"semantic": False}


def rig_settings(server: FakeTelegramServer, db_path: Any, **sections: Any) -> Any:
    """Settings for a test bot: echo backend, raw context, loopback Bot API, no bot-wide cap,
    rules-only screen (`SEMANTIC_OFF`)."""
    from pydantic import SecretStr

    from bot.config import Settings

    telegram = {
        "base_url": server.base_url,
        "base_file_url": server.base_file_url,
        "edit_interval_seconds": 0.05,
        "poll_timeout_seconds": 2,
        "overall_max_rate": 0,  # loopback: Telegram's 30 msg/s cap would only slow the test
        "group_max_rate": 0,
        **sections.pop("telegram", {}),
    }
    return Settings(
        model={"backend": "echo", "n_ctx": 2048, **sections.pop("model", {})},
        memory={"db_path": db_path, "context_representation": "raw", **sections.pop("memory", {})},
        telegram=telegram,
        telegram_token=SecretStr(server.token),
        safety={**SEMANTIC_OFF, **sections.pop("safety", {})},
        **sections,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhook_section(port: int | None = None, **extra: Any) -> dict[str, Any]:
    """The `telegram` settings of webhook mode on a free loopback port (plain HTTP: no proxy)."""
    port = port or free_port()
    return {
        "mode": "webhook",
        "webhook_listen": "127.0.0.1",
        "webhook_port": port,
        "webhook_path": "/telegram",
        "webhook_url": f"http://127.0.0.1:{port}/telegram",
        **extra,
    }


@contextlib.asynccontextmanager
async def telegram_rig(
    memory: Any, db_path: Any, backend: Any = None, **sections: Any
) -> AsyncIterator[TelegramRig]:
    """Start the fake server and the real bot (echo backend unless given); stop both after."""
    from bot.adapters.telegram import build_application, run_telegram
    from bot.backends import EchoBackend
    from bot.engine import build_engine

    async with FakeTelegramServer() as server:
        settings = rig_settings(server, db_path, **sections)
        backend = backend or EchoBackend(n_ctx=2048)
        engine = build_engine(settings, backend=backend, memory=memory)
        app = build_application(engine, settings)
        async with run_telegram(app, settings):
            try:
                yield TelegramRig(server, engine, settings)
            finally:
                await server.release_polls()


def load_text(user: int, index: int) -> str:
    """The text simulated user `user` sends as its `index`-th message in a load run."""
    return f"user {user} message {index} feeling a bit better today"


async def run_load(rig: TelegramRig, users: int, per_user: int, timeout: float = 300.0) -> float:
    """Every user sends `per_user` messages at once; wait until each is answered and stored.

    Returns the seconds from the first message to the last reply. User ids are 1..`users`.
    """
    start = time.perf_counter()
    for index in range(per_user):
        for user in range(1, users + 1):
            await rig.server.send_text(user, load_text(user, index))
    expected = users * per_user
    endings = {f"You said: {load_text(u, i)}" for u in range(1, users + 1) for i in range(per_user)}

    def answered() -> bool:
        if len(rig.server.sent) < expected:
            return False
        done = 0
        for sent in rig.server.sent:
            text = sent.text or ""
            done += text[text.rfind("You said: ") :] in endings
        return done >= expected

    async with asyncio.timeout(timeout):
        while rig.engine.memory.stats()["turns"] < 2 * expected:
            await asyncio.sleep(0.05)
        await rig.server.wait_for(answered, timeout)
    return time.perf_counter() - start


# --- Discord ----------------------------------------------------------------------------------


@dataclass
class DiscordRig:
    """The fake REST server, the gateway feeder and the real client + engine."""

    rest: FakeDiscordREST
    gateway: Gateway
    client: Any
    engine: Any
    app: ApplicationAPI
    interactions: Interactions

    async def say(self, user: int, text: str) -> str:
        """DM `text` as `user`, wait for the echo reply and return its final content."""
        self.gateway.send(user, text)
        sent = await self.reply_ending(self.gateway.dm_channel(user), f"You said: {text}")
        return sent.content

    def dm(self, user: int) -> list[str]:
        """Final contents of the bot's messages in its DM with `user`."""
        return self.replies(self.gateway.dm_channel(user))

    def replies(self, channel_id: int) -> list[str]:
        """Final contents of the bot's messages in `channel_id`."""
        return [m.content for m in self.rest.sent_to(channel_id)]

    async def reply_ending(
        self, channel_id: int, ending: str, timeout: float = 20.0
    ) -> DiscordMessage:
        """Wait for a bot message in `channel_id` whose content ends with `ending`."""

        def find() -> DiscordMessage | None:
            return next(
                (m for m in self.rest.sent_to(channel_id) if m.content.endswith(ending)), None
            )

        await self.rest.wait_for(lambda: find() is not None, timeout)
        found = find()
        assert found is not None
        return found


@contextlib.asynccontextmanager
async def discord_rig(
    memory: Any, db_path: Any, backend: Any = None, **sections: Any
) -> AsyncIterator[DiscordRig]:
    """Start the fake REST server and log the real client in against it (echo backend unless
    given)."""
    import discord
    from pydantic import SecretStr

    from bot.adapters.discord import build_client
    from bot.backends import EchoBackend
    from bot.config import Settings
    from bot.engine import build_engine
    from bot.secrets import discord_token

    original_base = discord.http.Route.BASE
    async with FakeDiscordREST() as rest:
        app = ApplicationAPI(rest)
        settings = Settings(
            model={"backend": "echo", "n_ctx": 2048},
            memory={"db_path": db_path, "context_representation": "raw"},
            discord={
                "rest_base_url": rest.base_url,
                "edit_interval_seconds": 0.05,
                **sections.pop("discord", {}),
            },
            discord_token=SecretStr(rest.token),
            safety={**SEMANTIC_OFF, **sections.pop("safety", {})},
            **sections,
        )
        engine = build_engine(settings, backend=backend or EchoBackend(n_ctx=2048), memory=memory)
        client = build_client(engine, settings)
        try:
            await client.login(discord_token(settings))
            gateway = Gateway(client, rest)
            yield DiscordRig(rest, gateway, client, engine, app, Interactions(gateway, app))
        finally:
            await client.close()
            discord.http.Route.BASE = original_base
