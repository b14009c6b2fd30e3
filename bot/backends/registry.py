"""The backend registry: a plain dict from `model.backend` names to factories."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.backends.base import Backend
from bot.backends.echo import EchoBackend
from bot.backends.llama_cpp import LlamaCppBackend
from bot.backends.openai import OpenAIBackend
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.config import Settings

BACKENDS: dict[str, Callable[[Settings], Backend]] = {
    "llama-cpp": LlamaCppBackend.from_settings,
    "openai": OpenAIBackend.from_settings,
    "echo": EchoBackend.from_settings,
}


def build_backend(settings: Settings) -> Backend:
    """The backend named by `model.backend`."""
    try:
        factory = BACKENDS[settings.model.backend]
    except KeyError:
        raise ConfigError(
            f"model.backend {settings.model.backend!r} is not one of {sorted(BACKENDS)}"
        ) from None
    return factory(settings)
