"""What every loopback server shares: an aiohttp app on 127.0.0.1 at a free port, started and
stopped with `async with`, and a way to wait until the client under test has done something."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Self

from aiohttp import web

MAX_BODY_BYTES = 64 * 1024 * 1024  # uploads (exports, reports) fit


class LoopbackServer:
    """Subclasses add their routes in `add_routes` and call `_notify()` after every request."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def add_routes(self, app: web.Application) -> None:
        """Register the server's handlers on `app`."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        """Wait until `predicate()` holds (re-checked after every request the client makes)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
