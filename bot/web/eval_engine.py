"""Study models answer through the real engine: safety screen, context, backend, reply guard.

One `bot.engine.Engine` per study model (its backend built from the study's settings), all over
one in-memory `MemoryStore`: a rater's conversations stay out of the bot's `turns`, `events`
and moderator reports. What is durable is the console's `web_eval_turns`; after a restart a
conversation's history is replayed into the engine's memory before its next message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
from typing import Any

from bot.config import ModelSettings, OpenAISettings, Settings
from bot.messages import IncomingMessage
from bot.web.studies import Study

logger = logging.getLogger(__name__)

PLATFORM = "study"


def model_settings(settings: Settings, model: dict[str, Any]) -> Settings:
    """The bot's settings with the study model's backend in place of `[model]`."""
    update: dict[str, Any] = {
        "model": ModelSettings(
            backend=model["backend"],
            path=model.get("path"),
            lora_path=model.get("lora_path"),
            use_default_adapter=bool(model.get("default_adapter", True)),
            n_ctx=settings.model.n_ctx,
            n_threads=settings.model.n_threads,
            cache_mb=settings.model.cache_mb,
        )  # fmt: skip
    }
    if model["backend"] == "openai":
        update["openai"] = OpenAISettings(
            **{
                **settings.openai.model_dump(),
                "base_url": model["base_url"],
                "model": model["model"],
            }  # fmt: skip
        )
    return settings.model_copy(update=update)


class StudyEngines:
    """Engines for study models, built on first use and kept for the process's life."""

    def __init__(self, settings: Settings) -> None:
        from sqlite_utils import Database

        from bot.memory.store import MemoryStore

        self.settings = settings
        # Built where the app is built, used only on the event loop's thread.
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        self.memory = MemoryStore(Database(conn), secrets.token_bytes(32))
        self._engines: dict[tuple[int, int], Any] = {}
        self._building = asyncio.Lock()
        self._replayed: set[str] = set()

    async def engine(self, study: Study, index: int) -> Any:
        """The engine of model `index` of `study` (its backend loads in a worker thread)."""
        key = (study.id, index)
        async with self._building:
            if key not in self._engines:
                from bot.backends.registry import build_backend
                from bot.engine.build import build_safety
                from bot.engine.engine import Engine

                settings = model_settings(self.settings, study.models[index])
                backend = await asyncio.to_thread(build_backend, settings)
                safety = build_safety(settings, backend)
                self._engines[key] = Engine(backend, self.memory, safety, settings)
            return self._engines[key]

    def _prepare(self, user_id: str, history: list[tuple[str, str]]) -> str:
        key = self.memory.pseudonym(PLATFORM, user_id)
        if key not in self._replayed:
            self.memory.forget_user(key)  # a half-replayed earlier attempt
            self.memory.mark_notice_seen(key, PLATFORM)  # raters are staff, not bot users
            for role, text in history:
                self.memory.add_turn(key, platform=PLATFORM, role=role, text=text,
                                     tokens=len(text.split()))  # fmt: skip
            self._replayed.add(key)
        return key

    async def reply(
        self, study: Study, index: int, session_id: int, history: list[tuple[str, str]],
        text: str,
    ) -> tuple[str, str | None]:  # fmt: skip
        """The model's reply to `text` after `history`, and the safety event it raised
        ("crisis:suicide", "guard:…", "backend_error:…") or None."""
        engine = await self.engine(study, index)
        user_id = f"{study.id}:{session_id}:{index}"
        key = self._prepare(user_id, history)
        last = self._last_event(key)
        pieces = []
        message = IncomingMessage(PLATFORM, user_id, text)
        async with contextlib.aclosing(engine.respond(message)) as stream:
            async for piece in stream:
                pieces.append(piece)
        events = self.memory.db.execute(
            "SELECT kind, category FROM events WHERE user_key = ? AND id > ? ORDER BY id",
            [key, last],
        ).fetchall()
        kinds = {kind: category for kind, category in events}
        event = None
        for kind in ("crisis", "guard", "backend_error", "concern"):  # most serious first
            if kind in kinds:
                event = f"{kind}:{kinds[kind] or 'unspecified'}"
                break
        return "".join(pieces).strip(), event

    def _last_event(self, key: str) -> int:
        row = self.memory.db.execute(
            "SELECT COALESCE(MAX(id), 0) FROM events WHERE user_key = ?", [key]
        ).fetchone()
        return int(row[0])
