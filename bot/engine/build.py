"""Wiring the real parts into an `Engine`: memory (migrated), backend, safety layer."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.backends import Backend, GenOptions, build_backend
from bot.config import Settings
from bot.engine.engine import Engine
from bot.memory import MemoryStore, open_memory, resolve_secret
from bot.safety import SafetyLayer
from bot.safety.layer import CLASSIFIER_SAMPLING
from bot.safety.protocols import Classify, SafetyProtocol
from dialogue.prompts import Message


def backend_classifier(backend: Backend) -> Classify:
    """The safety layer's LLM second opinion, answered by `backend` (greedy, a few tokens)."""
    options = GenOptions(**CLASSIFIER_SAMPLING)

    def classify(messages: list[Message]) -> str:
        return "".join(backend.generate(messages, options))

    return classify


def build_safety(settings: Settings, backend: Backend) -> SafetyProtocol:
    """The real `bot.safety.SafetyLayer` — never a pass-through: the bot does not run unscreened.

    The LLM second opinion uses the backend only when it serves requests in parallel (a remote
    server): the single local model is not shared with the classifier, so a slow or timed-out
    classification can never run on it at the same time as a reply.
    """
    classifier = backend_classifier(backend) if backend.parallel else None
    semantic = None
    if settings.safety.semantic:
        from bot.safety.semantic import build_semantic

        semantic, _ = build_semantic(  # on failure: one log line, the rules run alone
            settings.safety.encoder_path,
            settings.safety.semantic_classifier_path,
            threads=settings.safety.encoder_threads,
        )
    layer: SafetyProtocol = SafetyLayer(settings.safety, classifier, semantic=semantic)
    return layer


def build_engine(
    settings: Settings,
    *,
    backend: Backend | None = None,
    memory: MemoryStore | None = None,
    allow_secret_file: bool = False,
    clock: Callable[[], float] = time.time,
) -> Engine:
    """Wire an engine from settings: memory (migrated), backend, safety.

    Args:
        allow_secret_file: let a missing SOLACE_PSEUDONYM_SECRET be generated into a file next
            to the database (for `solace chat` on a developer machine; servers must not).
    """
    if memory is None:
        secret_env = (
            settings.pseudonym_secret.get_secret_value() if settings.pseudonym_secret else None
        )
        db_path = settings.memory.db_path
        secret = resolve_secret(secret_env, db_path, allow_file=allow_secret_file)
        memory = open_memory(db_path, secret, clock=clock)
    if backend is None:
        backend = build_backend(settings)
    return Engine(backend, memory, build_safety(settings, backend), settings, clock=clock)
