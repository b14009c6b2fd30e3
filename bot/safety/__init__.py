"""Safety: the crisis screen before the model, the reply guard after it, crisis resources.

`screen` (rules in `patterns/`, text in `text`), `semantic` (the learned layer: a sentence
encoder and a small classifier, `data/semantic_classifier.json`; trained by `semantic_train` on
`semantic_data`), `context` (rules + semantic layer + conversation context, the risk score),
`checkin` (the concern check-in), `guard` (the reply guard), `resources` (the hotline table in
`data/hotlines.json` and the crisis reply), `layer` (`SafetyLayer`, what the engine holds),
`protocols` (the contract the engine relies on), `evaluate`, `figures` and `cli`, `semantic_cli`
(`solace safety`). Never imports a backend: the LLM second opinion is handed in as a function.
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from bot.safety.checkin import (
        answers_yes as answers_yes,
        compose_checkin as compose_checkin,
    )
    from bot.safety.context import (
        LayeredScreen as LayeredScreen,
        RiskState as RiskState,
        semantic_input as semantic_input,
    )
    from bot.safety.guard import (
        GuardResult as GuardResult,
        PromptLeakDetector as PromptLeakDetector,
        guard_reply as guard_reply,
    )
    from bot.safety.layer import (
        CLASSIFIER_PROMPT as CLASSIFIER_PROMPT,
        SafetyLayer as SafetyLayer,
        parse_classifier_label as parse_classifier_label,
    )
    from bot.safety.patterns.blocks import CATEGORIES as CATEGORIES
    from bot.safety.protocols import (
        Classify as Classify,
        SafetyProtocol as SafetyProtocol,
    )
    from bot.safety.resources import (
        Hotlines as Hotlines,
        compose_crisis_reply as compose_crisis_reply,
        load_hotlines as load_hotlines,
    )
    from bot.safety.screen import (
        NO_CRISIS as NO_CRISIS,
        ScreenResult as ScreenResult,
        screen_message as screen_message,
        screen_normalized as screen_normalized,
        vetoed_clauses as vetoed_clauses,
    )
    from bot.safety.semantic import (
        SemanticClassifier as SemanticClassifier,
        SemanticScreen as SemanticScreen,
        SentenceEncoder as SentenceEncoder,
        build_semantic as build_semantic,
    )

__getattr__, __dir__ = lazy_exports(__name__)
