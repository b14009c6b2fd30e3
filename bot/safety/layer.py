"""Solace's safety layer: crisis screening before the model, a reply guard after it.

Pure functions do the work (`bot.safety.screen.screen_message`, `bot.safety.guard.guard_reply`);
`SafetyLayer` wires them to the settings, the optional LLM second opinion and the crisis reply
text. The engine calls, per turn: `await safety.screen(text)` → on a crisis
`safety.crisis_reply(result, country, language_code)` (the model is not called) → otherwise
`safety.guard(text_so_far, final=False)` before releasing each streamed piece and
`safety.guard(reply, final=True)` at the end → `safety.fallback_reply()` when the guard says no.
See docs/safety.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.safety.guard import GuardResult, PromptLeakDetector, guard_reply
from bot.safety.patterns.blocks import CATEGORIES
from bot.safety.protocols import Classify
from bot.safety.resources import Hotlines, compose_crisis_reply, load_hotlines
from bot.safety.screen import ScreenResult, screen_message

if TYPE_CHECKING:
    from bot.safety.semantic import SemanticScreen

logger = logging.getLogger(__name__)

CLASSIFIER_PROMPT = (
    "You are a safety classifier for an emotional-support chat service. Read the user's message "
    "and answer with exactly one word from this list: suicide, self_harm, abuse, harm_to_others, "
    "medical_emergency, none. Choose a category only if the writer, or someone with them, may be "
    "in danger now. Ordinary sadness, stress or loneliness is none."
)
# How the classifier samples (greedy, one short label) and how much of a message it reads.
CLASSIFIER_SAMPLING: dict[str, Any] = {"temperature": 0.0, "max_new_tokens": 8, "seed": 0}
CLASSIFIER_INPUT_CHARS = 4000
_CLASSIFIER_LABEL_RE = re.compile(r"\b(" + "|".join(CATEGORIES) + r"|none)\b")


def parse_classifier_label(output: str) -> str | None:
    """The category a classifier answered (first label in its output), or None."""
    found = _CLASSIFIER_LABEL_RE.search(
        output.lower().replace("-", "_").replace("self harm", "self_harm")
    )
    if found is None or found.group(1) == "none":
        return None
    return found.group(1)


class SafetyLayer:
    """The safety layer the engine holds: screen, crisis reply, guard and fallback.

    Args:
        settings: the `safety` section of `bot.config.Settings` (duck-typed; missing fields
            take the defaults documented in docs/safety.md).
        classifier: an optional second opinion: a function from chat messages to the model's
            answer (`bot.engine.backend_classifier` builds one from a backend). Its answer can
            raise, never lower, the level.
        lock: held around classifier calls (pass the engine's model lock when the classifier
            is the same single-context local model).
    """

    def __init__(
        self,
        settings: Any = None,
        classifier: Classify | None = None,
        *,
        lock: asyncio.Lock | None = None,
        system_prompt: str | None = None,
        semantic: SemanticScreen | None = None,
    ) -> None:
        from bot.safety.context import LayeredScreen
        from dialogue.prompts import SYSTEM_PROMPT

        self._layered = LayeredScreen(semantic)
        self._settings = settings
        self._classifier = classifier if self._setting("llm_classifier", False) else None
        self._lock = lock
        self._timeout_s = float(self._setting("classifier_timeout_seconds", 20.0))
        self._leak = PromptLeakDetector(system_prompt or SYSTEM_PROMPT)
        path = self._setting("hotlines_path", None)
        self._hotlines: Hotlines = load_hotlines(path)
        self._default_country: str | None = self._setting("default_country", None)

    def _setting(self, name: str, default: Any) -> Any:
        value = getattr(self._settings, name, None)
        return default if value is None else value

    @property
    def hotlines(self) -> Hotlines:
        """The hotline table in use."""
        return self._hotlines

    @property
    def semantic_status(self) -> str:
        """The semantic layer's state: "ready", "failing: ..." or "off"."""
        return self._layered.status

    async def screen(
        self, text: str, context: Sequence[str] = (), *, raised: bool = False
    ) -> ScreenResult:
        """Rules, then the semantic layer over the message and the person's recent user turns
        (`bot.safety.context`), then the optional LLM second opinion (which can only raise).

        Args:
            context: the person's earlier user turns in this conversation, oldest first.
            raised: the person's conversation-level risk is raised (lower thresholds).
        """
        if self._layered.semantic is None:
            result = screen_message(text)
        else:  # the encoder blocks for a few milliseconds: keep it off the event loop
            verdict = await asyncio.to_thread(self._layered.screen, text, context, raised=raised)
            result = verdict.result
        if result.crisis or self._classifier is None:
            return result
        label = await self._classify(text)
        if label is None:
            return result
        return ScreenResult(crisis=True, category=label, level="crisis", matched=f"llm:{label}")

    async def _classify(self, text: str) -> str | None:
        try:
            if self._lock is None:
                output = await asyncio.wait_for(
                    asyncio.to_thread(self._classify_sync, text), self._timeout_s
                )
            else:
                async with self._lock:
                    output = await asyncio.wait_for(
                        asyncio.to_thread(self._classify_sync, text), self._timeout_s
                    )
        except Exception as exc:  # a boundary: a broken classifier must not break a turn
            logger.warning(
                "safety classifier failed (%s); using the deterministic screen", type(exc).__name__
            )
            return None
        return parse_classifier_label(output)

    def _classify_sync(self, text: str) -> str:
        classifier = self._classifier
        if classifier is None:
            return ""
        messages = [
            {"role": "system", "content": CLASSIFIER_PROMPT},
            {"role": "user", "content": text[:CLASSIFIER_INPUT_CHARS]},
        ]
        return classifier(messages)

    def crisis_reply(
        self, result: ScreenResult, country: str | None = None, language_code: str | None = None
    ) -> str:
        """The fixed, warm reply with resources for the user's country (or a fallback)."""
        return compose_crisis_reply(
            self._hotlines,
            result.category,
            result.subject,
            country or self._default_country,
            language_code,
        )

    def checkin_reply(self, result: ScreenResult, country: str | None = None) -> str:
        """The fixed check-in that follows the model's reply at concern level."""
        from bot.safety.checkin import compose_checkin

        return compose_checkin(self._hotlines, result.category, country or self._default_country)

    def answers_yes(self, text: str) -> bool:
        """True when a message answers the check-in with yes (any usual phrasing)."""
        from bot.safety.checkin import answers_yes

        return answers_yes(text)

    def guard(self, reply_so_far: str, *, final: bool) -> GuardResult:
        """Check model output before it is shown; `final=False` for each streamed piece."""
        return guard_reply(reply_so_far, final=final, leak=self._leak)

    def releasable(self, reply_so_far: str, sent: int) -> int:
        """How much of a guard-passed partial reply may be sent (see bot.safety.holdback)."""
        from bot.safety.holdback import hold_from

        return hold_from(reply_so_far, sent, self._leak)

    def fallback_reply(self) -> str:
        """What the user sees instead of a withdrawn reply."""
        return (
            "I'm sorry, I don't think what I was about to say would help. I'm still here and "
            "listening. Could you tell me a little more about how you're feeling right now?"
        )
