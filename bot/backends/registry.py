"""The backend registry: a plain dict from `model.backend` names to factories."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.backends.base import Backend
from bot.backends.echo import EchoBackend
from bot.backends.llama_cpp import LlamaCppBackend
from bot.backends.llama_server import LlamaServerBackend
from bot.backends.openai import OpenAIBackend
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.config import Settings

BACKENDS: dict[str, Callable[[Settings], Backend]] = {
    "llama-cpp": LlamaCppBackend.from_settings,
    "llama-server": LlamaServerBackend.from_settings,
    "openai": OpenAIBackend.from_settings,
    "echo": EchoBackend.from_settings,
}
# What `model.backend = "auto"` means outside `solace serve` (which runs llama-server).
AUTO_BACKEND = "llama-cpp"


def build_backend(settings: Settings) -> Backend:
    """The backend named by `model.backend` ("auto": llama-cpp here; `solace serve` resolves
    it to llama-server before calling this)."""
    name = settings.model.backend
    try:
        factory = BACKENDS[AUTO_BACKEND if name == "auto" else name]
    except KeyError:
        raise ConfigError(f"model.backend {name!r} is not one of {sorted(BACKENDS)}") from None
    return factory(settings)
