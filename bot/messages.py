"""Platform-neutral message types shared by the adapters and the engine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A text message from a person on some platform.

    Args:
        platform: "console", "telegram" or "discord".
        user_id: the platform's user id as a string. Never stored raw: memory keys users by a
            keyed pseudonym of (platform, user_id).
        text: what the person wrote, exactly as received.
        language_code: a hint for localised crisis resources (Telegram's `language_code`).
        chat_id: the group chat or server channel the message was posted in; None for a
            private chat (a DM, the console). It picks the conversation: each group keeps its
            own, apart from the private one (never stored raw: a keyed hash).
    """

    platform: str
    user_id: str
    text: str
    language_code: str | None = None
    chat_id: str | None = None
