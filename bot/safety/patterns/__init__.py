"""The crisis screen's rules, as data: `CRISIS_PATTERNS` is every rule the screen runs.

`blocks` holds the building blocks (the `CrisisPattern` type, its regex macros, the context
word classes and the reply-guard claim grammar); `self_harm` the suicide and self-harm rules;
`risk` the rules for abuse, harm to others and medical emergencies.
"""

from bot.safety.patterns.blocks import CrisisPattern
from bot.safety.patterns.risk import RISK_PATTERNS
from bot.safety.patterns.self_harm import SUICIDE_SELF_HARM_PATTERNS

CRISIS_PATTERNS: tuple[CrisisPattern, ...] = SUICIDE_SELF_HARM_PATTERNS + RISK_PATTERNS
"""Every crisis pattern; the screen runs them all and keeps the most urgent verdict."""

__all__ = ["CRISIS_PATTERNS", "RISK_PATTERNS", "SUICIDE_SELF_HARM_PATTERNS", "CrisisPattern"]
