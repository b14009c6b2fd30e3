"""The webhook side of the fake Bot API (tests/servers/telegram.py): setWebhook, deleteWebhook,
getWebhookInfo, and delivering updates to the bot's webhook as Telegram does - a POST with the
JSON update and the `X-Telegram-Bot-Api-Secret-Token` header - or as an attacker would.

While a webhook is set, `FakeTelegramServer.push` delivers each update at once; an update the bot
did not take (no answer, or not 2xx) stays pending, as Telegram keeps it, and counts in
`pending_update_count`. getUpdates is refused with 409 meanwhile, as Telegram refuses it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@dataclass
class Delivery:
    """One POST to a webhook: where, whether the right secret went with it, the answer."""

    url: str
    update_id: int | None
    status: int
    secret_sent: bool


@dataclass
class WebhookState:
    """What setWebhook registered, and every delivery attempt."""

    url: str = ""
    secret_token: str | None = None
    allowed_updates: list[str] | None = None
    max_connections: int | None = None
    set_calls: list[dict[str, Any]] = field(default_factory=list)
    delete_calls: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    last_error_date: int | None = None
    last_error_message: str | None = None

    def set(self, params: dict[str, Any]) -> bool:
        """setWebhook: an empty url removes it, as Telegram does."""
        self.set_calls.append(params)
        self.url = str(params.get("url") or "")
        self.secret_token = params.get("secret_token")
        self.allowed_updates = params.get("allowed_updates")
        self.max_connections = params.get("max_connections")
        return True

    def delete(self, params: dict[str, Any]) -> bool:
        """deleteWebhook."""
        self.delete_calls.append(params)
        self.url, self.secret_token = "", None
        return True

    def info(self, pending: int) -> dict[str, Any]:
        """getWebhookInfo's result."""
        result: dict[str, Any] = {
            "url": self.url,
            "has_custom_certificate": False,
            "pending_update_count": pending,
        }
        if self.url and self.max_connections is not None:
            result["max_connections"] = self.max_connections
        if self.url and self.allowed_updates is not None:
            result["allowed_updates"] = self.allowed_updates
        if self.last_error_date is not None:
            result["last_error_date"] = self.last_error_date
            result["last_error_message"] = self.last_error_message
        return result

    async def post(
        self,
        body: bytes,
        *,
        url: str | None = None,
        secret: str | None = None,
        content_type: str = "application/json",
        update_id: int | None = None,
    ) -> int:
        """POST `body` to the webhook (or `url`) with `secret` in the header (None: no header);
        returns the HTTP status (599 when nothing answered)."""
        target = url or self.url
        headers = {"Content-Type": content_type}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(target, data=body, headers=headers) as response,
            ):
                await response.read()
                status = response.status
        except aiohttp.ClientError:
            status = 599
        right = secret is not None and secret == self.secret_token
        self.deliveries.append(Delivery(target, update_id, status, right))
        if not 200 <= status < 300 and url is None:
            self.last_error_date = int(time.time())
            self.last_error_message = f"Wrong response from the webhook: {status}"
        return status

    async def deliver(self, update: dict[str, Any], url: str | None = None) -> int:
        """Deliver one update as Telegram does (the registered secret, JSON body)."""
        return await self.post(
            json.dumps(update).encode(),
            url=url,
            secret=self.secret_token,
            update_id=int(update["update_id"]),
        )


class WebhookMethods:
    """The webhook methods of FakeTelegramServer (a mixin: it uses the server's `updates`)."""

    updates: list[dict[str, Any]]
    webhook: WebhookState
    # Where a delivery goes: the registered URL, or what `route(update)` says (several URLs = a
    # retry that a load balancer sent to another process too).
    route: Callable[[dict[str, Any]], list[str]] | None
    _tasks: set[asyncio.Task[None]]

    if TYPE_CHECKING:

        async def _notify(self) -> None:  # LoopbackServer's
            ...

    async def deliver_now(self, update: dict[str, Any]) -> None:
        """Deliver `update` to the webhook; when no target took it, it stays pending and is
        retried in the background, as Telegram retries."""
        if not await self._try(update):
            self._retry_later()

    async def _try(self, update: dict[str, Any]) -> bool:
        targets = self.route(update) if self.route is not None else [self.webhook.url]
        taken = False
        for url in targets:
            taken |= 200 <= await self.webhook.deliver(update, url=url) < 300
        if taken:
            self.updates = [u for u in self.updates if u["update_id"] != update["update_id"]]
        await self._notify()
        return taken

    def _retry_later(self) -> None:
        if any(not task.done() for task in self._tasks):
            return
        task = asyncio.get_running_loop().create_task(self._deliver_pending())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_pending(self) -> None:
        """Deliver what Telegram kept, oldest first, retrying while the bot's server does not
        answer (PTB listens only after setWebhook returns); gives up after ~10 s."""
        for _ in range(200):
            if not self.updates or not self.webhook.url:
                return
            if not await self._try(self.updates[0]):
                await asyncio.sleep(0.05)

    def stop_retries(self) -> None:
        """Cancel background deliveries (the server is closing)."""
        for task in self._tasks:
            task.cancel()

    def _m_setWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        if params.get("drop_pending_updates"):
            self.updates.clear()
        self.webhook.set(params)
        self._retry_later()  # what Telegram kept meanwhile
        return True

    def _m_deleteWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        if params.get("drop_pending_updates"):
            self.updates.clear()
        return self.webhook.delete(params)

    def _m_getWebhookInfo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self.webhook.info(len(self.updates))
