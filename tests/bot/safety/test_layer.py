"""The safety layer (bot.safety.layer): the LLM second opinion can raise, never lower, the level."""

from __future__ import annotations

import pytest

from bot.safety import (
    SafetyLayer,
    ScreenResult,
    parse_classifier_label,
)

# --- the LLM second opinion ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "output,label",
    [
        ("self_harm", "self_harm"),
        ("Category: Self harm.", "self_harm"),
        ("none", None),
        ("??", None),
    ],
)
def test_parse_classifier_label(output: str, label: str | None) -> None:
    assert parse_classifier_label(output) == label


async def test_classifier_can_raise_but_never_lower() -> None:
    from bot.backends import EchoBackend
    from bot.engine import backend_classifier

    # The echo backend answers "You said: <message>", so the message decides its "opinion".
    on = type("S", (), {"llm_classifier": True})()
    layer = SafetyLayer(on, backend_classifier(EchoBackend()))
    raised = await layer.screen("medical_emergency")
    assert raised == ScreenResult(True, "medical_emergency", "crisis", "llm:medical_emergency")
    kept = await layer.screen("I want to kill myself, none")
    assert kept.crisis and kept.matched == "suicide/kill_self"
    calm = await layer.screen("I had a nice day, none")
    assert calm.level == "none"
    off = SafetyLayer(None, backend_classifier(EchoBackend()))
    assert (await off.screen("medical_emergency")).level == "none"


async def test_broken_classifier_falls_back_to_patterns() -> None:
    def broken(messages: object) -> str:
        raise RuntimeError("server down")

    layer = SafetyLayer(type("S", (), {"llm_classifier": True})(), broken)
    assert (await layer.screen("I feel sad")).level == "none"
