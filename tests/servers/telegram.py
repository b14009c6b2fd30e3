"""A local fake of the Telegram Bot API (aiohttp on 127.0.0.1) for driving the real PTB client.

The real `telegram.ext.Application` is pointed at it with `base_url`; tests queue updates (what
users "send") and read back what the bot sent, edited and uploaded. It speaks the methods the
adapter uses — getMe, getUpdates (long polling), sendMessage, editMessageText, sendChatAction,
sendDocument, answerCallbackQuery, editMessageReplyMarkup, setMyCommands, and the webhook methods
(tests/servers/telegram_webhook.py: updates are then POSTed to the bot's webhook) — and can answer
any of them with a 429 `retry_after` to exercise flood control.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.servers.loopback import LoopbackServer
from tests.servers.telegram_webhook import WebhookMethods, WebhookState

BOT_ID = 424242
BOT_USERNAME = "solace_test_bot"
TOKEN = "424242:AAF" + "x" * 32
# Parameters PTB sends as plain strings; every other form field is JSON-encoded by PTB.
STRING_FIELDS = {"text", "caption", "action", "callback_query_id", "parse_mode", "emoji"}


@dataclass
class SentMessage:
    """A message the bot sent, with its edit history."""

    chat_id: int
    message_id: int
    text: str | None
    history: list[str] = field(default_factory=list)
    reply_markup: dict[str, Any] | None = None
    document: bytes | None = None
    file_name: str | None = None
    reply_to: int | None = None
    created_at: float = field(default_factory=time.perf_counter)


class FakeTelegramServer(WebhookMethods, LoopbackServer):
    """The fake Bot API. Use `async with FakeTelegramServer() as server:`."""

    def __init__(self, token: str = TOKEN) -> None:
        super().__init__()
        self.token = token
        self.updates: list[dict[str, Any]] = []
        self.sent: list[SentMessage] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.chat_actions: list[tuple[int, str]] = []
        self.rate_limited: list[str] = []
        self.bad_requests: list[str] = []
        self._closing = False
        self._failures: dict[str, deque[int]] = defaultdict(deque)
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(1)
        self.webhook = WebhookState()
        self.route = None
        self._tasks = set()

    async def __aexit__(self, *exc: object) -> None:
        self.stop_retries()
        await super().__aexit__(*exc)

    def add_routes(self, app: web.Application) -> None:
        """Every Bot API method, by GET or POST."""
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)

    @property
    def base_url(self) -> str:
        """What to pass as PTB's `base_url` (the token is appended by PTB)."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """What to pass as PTB's `base_file_url`."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    # --- what users do ---------------------------------------------------------------------
    def fail_next(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 Too Many Requests."""
        self._failures[method].extend([retry_after] * times)

    async def push(self, update: dict[str, Any]) -> int:
        """Queue a raw update; returns its update_id."""
        update_id = next(self._update_ids)
        self.updates.append({"update_id": update_id, **update})
        if self.webhook.url:
            await self.deliver_now(self.updates[-1])
        await self._notify()
        return update_id

    def _message(
        self,
        user_id: int,
        chat_id: int | None,
        chat_type: str,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        chat_id = user_id if chat_id is None else chat_id
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = f"User{user_id}"
        else:
            chat["title"] = f"Group {chat_id}"
        sender = {
            "id": user_id,
            "is_bot": False,
            "first_name": f"User{user_id}",
            "language_code": "en",
        }
        message = {"message_id": next(self._ids), "date": int(time.time()), "chat": chat}
        return {**message, "from": sender, **extra}

    async def send_text(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        chat_type: str = "private",
        reply_to: SentMessage | None = None,
        mention: bool = False,
    ) -> int:
        """A user sends `text`; returns the user's message_id."""
        extra: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split()[0]
            extra["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if mention:
            extra["text"] = f"@{BOT_USERNAME} {text}"
            extra["entities"] = [{"type": "mention", "offset": 0, "length": len(BOT_USERNAME) + 1}]
        if reply_to is not None:
            extra["reply_to_message"] = self._bot_message_payload(reply_to)
        message = self._message(user_id, chat_id, chat_type, extra)
        await self.push({"message": message})
        return int(message["message_id"])

    async def send_sticker(self, user_id: int) -> int:
        """A user sends a sticker (a non-text message)."""
        sticker = {
            "file_id": "sticker-1",
            "file_unique_id": "u-sticker-1",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
        message = self._message(user_id, None, "private", {"sticker": sticker})
        await self.push({"message": message})
        return int(message["message_id"])

    async def edit_text(self, user_id: int, message_id: int, text: str) -> None:
        """A user edits an earlier message of theirs."""
        message = self._message(user_id, None, "private", {"text": text})
        message["message_id"] = message_id
        message["edit_date"] = int(time.time())
        await self.push({"edited_message": message})

    async def press_button(self, user_id: int, sent: SentMessage, data: str) -> None:
        """A user presses an inline keyboard button under a bot message."""
        query = {
            "id": f"cq-{next(self._ids)}",
            "from": {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"},
            "chat_instance": str(sent.chat_id),
            "message": self._bot_message_payload(sent),
            "data": data,
        }
        await self.push({"callback_query": query})

    # --- what tests read -------------------------------------------------------------------
    def sent_to(self, chat_id: int) -> list[SentMessage]:
        """Messages the bot sent to `chat_id`, oldest first."""
        return [m for m in self.sent if m.chat_id == chat_id]

    def calls_of(self, method: str) -> list[dict[str, Any]]:
        """Parameters of every successful call of `method`."""
        return [params for name, params in self.calls if name == method]

    async def release_polls(self) -> None:
        """Answer waiting and future long polls at once (lets the bot stop without waiting)."""
        self._closing = True
        await self._notify()

    def reopen_polls(self) -> None:
        """Long-poll normally again (after `release_polls`, for a bot that restarts)."""
        self._closing = False

    # --- the HTTP side ---------------------------------------------------------------------
    def _bot_message_payload(self, sent: SentMessage) -> dict[str, Any]:
        chat_type = "private" if sent.chat_id > 0 else "group"
        chat: dict[str, Any] = {"id": sent.chat_id, "type": chat_type}
        if chat_type == "group":
            chat["title"] = f"Group {sent.chat_id}"
        payload: dict[str, Any] = {
            "message_id": sent.message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "Solace",
                "username": BOT_USERNAME,
            },
        }
        if sent.text is not None:
            payload["text"] = sent.text
        if sent.document is not None:
            payload["document"] = {
                "file_id": f"doc-{sent.message_id}",
                "file_unique_id": f"udoc-{sent.message_id}",
                "file_name": sent.file_name,
                "file_size": len(sent.document),
            }
        if sent.reply_markup:
            payload["reply_markup"] = sent.reply_markup
        return payload

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if part.filename:  # type: ignore[union-attr]
                    files[part.name or ""] = bytes(await part.read())  # type: ignore[union-attr]
                    params[f"{part.name}__filename"] = part.filename  # type: ignore[union-attr]
                else:
                    params[part.name or ""] = await part.text()  # type: ignore[union-attr]
        elif request.can_read_body:
            params = dict(await request.post())
        decoded = {}
        for key, value in params.items():
            if key in STRING_FIELDS or not isinstance(value, str):
                decoded[key] = value
            else:
                try:
                    decoded[key] = json.loads(value)
                except json.JSONDecodeError:
                    decoded[key] = value
        return decoded, files

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        method = request.match_info["method"]
        try:
            params, files = await self._params(request)
        except ConnectionResetError:  # the client gave up mid-request (e.g. a cancelled poll)
            return web.Response(status=499)
        failures = self._failures.get(method)
        if failures:
            retry_after = failures.popleft()
            self.rate_limited.append(method)
            await self._notify()
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {retry_after}",
                    "parameters": {"retry_after": retry_after},
                },
                status=429,
            )
        if method == "getUpdates" and self.webhook.url:
            return web.json_response(
                {"ok": False, "error_code": 409, "description": "Conflict: webhook is active"},
                status=409,
            )
        if method == "getUpdates":
            return web.json_response({"ok": True, "result": await self._get_updates(params)})
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": f"Not Found: {method}"},
                status=404,
            )
        result = handler(params, files)
        if isinstance(result, web.Response):  # a 400: Telegram did nothing
            self.bad_requests.append(method)
            return result
        self.calls.append((method, params))
        await self._notify()
        return web.json_response({"ok": True, "result": result})

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        # Confirming an offset drops everything before it, as Telegram does.
        self.updates = [u for u in self.updates if u["update_id"] >= offset]
        if not self.updates and timeout > 0:
            try:
                await self.wait_for(lambda: bool(self.updates) or self._closing, timeout)
            except TimeoutError:
                return []
        limit = int(params.get("limit") or 100)
        return self.updates[:limit]

    def _m_getMe(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Solace",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _m_setMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        return True

    def _m_sendChatAction(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        self.chat_actions.append((int(params["chat_id"]), str(params["action"])))
        return True

    def _m_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        return True

    def _store(self, params: dict[str, Any], **fields: Any) -> dict[str, Any]:
        reply = params.get("reply_parameters") or {}
        sent = SentMessage(
            chat_id=int(params["chat_id"]),
            message_id=next(self._ids),
            reply_markup=params.get("reply_markup"),
            reply_to=reply.get("message_id") if isinstance(reply, dict) else None,
            **fields,
        )
        self.sent.append(sent)
        return self._bot_message_payload(sent)

    def _m_sendMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        text = str(params.get("text", ""))
        if not text.strip() or len(text.encode("utf-16-le")) // 2 > 4096:
            return _bad_request("Bad Request: message text is empty or too long")
        return self._store(params, text=text, history=[text])

    def _m_sendDocument(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if "document" not in files:
            return _bad_request("Bad Request: there is no document in the request")
        return self._store(
            params,
            text=None,
            document=files["document"],
            file_name=params.get("document__filename"),
        )

    def _find(self, params: dict[str, Any]) -> SentMessage | None:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        for sent in self.sent:
            if sent.chat_id == chat_id and sent.message_id == message_id:
                return sent
        return None

    def _m_editMessageText(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        sent = self._find(params)
        text = str(params.get("text", ""))
        if sent is None:
            return _bad_request("Bad Request: message to edit not found")
        if not text.strip() or len(text.encode("utf-16-le")) // 2 > 4096:
            return _bad_request("Bad Request: message text is empty or too long")
        if text == sent.text and params.get("reply_markup") == sent.reply_markup:
            return _bad_request("Bad Request: message is not modified")
        sent.text = text
        sent.history.append(text)
        sent.reply_markup = params.get("reply_markup")
        return self._bot_message_payload(sent)

    def _m_editMessageReplyMarkup(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        sent = self._find(params)
        if sent is None:
            return _bad_request("Bad Request: message to edit not found")
        sent.reply_markup = params.get("reply_markup")
        return self._bot_message_payload(sent)


def _bad_request(description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": 400, "description": description}, status=400
    )
