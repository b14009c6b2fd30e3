"""Safety: the crisis screen before the model, the reply guard after it, crisis resources.

`screen` (rules in `patterns/`, text in `text`), `guard` (the reply guard), `resources` (the
hotline table in `data/hotlines.json` and the crisis reply), `layer` (`SafetyLayer`, what the
engine holds), `protocols` (the contract the engine relies on), `evaluate` and `cli`
(`solace safety`). Never imports a backend: the LLM second opinion is handed in as a function.
"""

from bot.safety.guard import GuardResult, PromptLeakDetector, guard_reply
from bot.safety.layer import CLASSIFIER_PROMPT, SafetyLayer, parse_classifier_label
from bot.safety.patterns.blocks import CATEGORIES
from bot.safety.protocols import Classify, SafetyProtocol
from bot.safety.resources import Hotlines, compose_crisis_reply, load_hotlines
from bot.safety.screen import NO_CRISIS, ScreenResult, screen_message, screen_normalized

__all__ = [
    "CATEGORIES",
    "CLASSIFIER_PROMPT",
    "NO_CRISIS",
    "Classify",
    "GuardResult",
    "Hotlines",
    "PromptLeakDetector",
    "SafetyLayer",
    "SafetyProtocol",
    "ScreenResult",
    "compose_crisis_reply",
    "guard_reply",
    "load_hotlines",
    "parse_classifier_label",
    "screen_message",
    "screen_normalized",
]
