"""The reply guard: decides whether model output may be shown to the user.

`guard_reply(text, final=...)` runs on the text streamed so far, so a withdrawn reply is never
shown: every rule is a regex over the normalised text (microseconds on a reply-sized string)
and fires on partial text, e.g. "take 20 mg" is caught the moment the unit arrives. Reasons:

- "method": method or dosage details (doses with units, lethal amounts, nooses, wrists...);
- "encourages_harm": telling the user to hurt themselves, that they'd be better off dead...;
- "crisis_statement": the model itself speaking as someone in crisis ("I want to die"),
  found by the crisis screen on the reply (the LoRA-tuned 270M model did this unprompted);
- "hostile", "sexual": insults, explicit sexual content;
- "identity_claim": claiming to be human or a licensed professional;
- "prompt_leak": word 6-gram overlap with the system prompt, or talking about its instructions;
- "empty" (final only): nothing to show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.safety_rules import NEGATORS
from bot.safety_text import normalize

LEAK_NGRAM_WORDS = 6
LEAK_MIN_SHARED_NGRAMS = 2


@dataclass(frozen=True, slots=True)
class GuardResult:
    """Whether a reply (or the part streamed so far) may be shown; `reason` when it may not."""

    ok: bool
    reason: str | None


OK = GuardResult(ok=True, reason=None)

# (reason, pattern, negatable). Patterns run on normalised text (see bot.safety_text).
_GUARD_RULES: tuple[tuple[str, re.Pattern[str], bool], ...] = tuple(
    (reason, re.compile(pattern), negatable)
    for reason, pattern, negatable in (
        (
            "method",
            r"\b[0-9]+ ?(?:mg|milligrams?|mcg|micrograms?|grams?|g|ml|tablets?|pills?|capsules?)\b"
            r"|\blethal (?:dose|amount|dosage|quantity)\b|\bhow (?:many|much) (?:pills|tablets) "
            r"(?:it takes|would|to)\b|\bnoose\b|\b(?:slit|cut|slash|open) (?:your|the|their) "
            r"(?:wrists?|throat|veins?)\b|\bcut deeper\b|\b(?:hang|hanging) yourself\b|\bcarbon "
            r"monoxide\b|\bexhaust fumes\b|\b(?:bleach|antifreeze|rat poison)\b|\b(?:painless|quick|"
            r"easy|best|surest) (?:way|ways|method|methods) to (?:die|end it|end your life|kill yourself)\b|\b(?:ways?|"
            r"methods?) (?:to|of) (?:kill(?:ing)? yourself|commit(?:ting)? suicide|end(?:ing)? your "
            r"life|suicide)\b|\bjump (?:off|from) (?:a|the) (?:bridge|roof|building|cliff)\b",
            False,
        ),
        (
            "encourages_harm",
            r"\b(?:you should|go ahead and|why dont you|just|you could|you can|you might as well) "
            r"(?:kill|hurt|cut|harm|starve|end|burn) (?:yourself|your life|it all)\b|\bkys\b"
            r"|\b(?:you(?:d| would)? be|youre) better off dead\b|\byou deserve (?:to die|to suffer|the "
            r"pain|to be hurt)\b|\b(?:no ?one|nobody) (?:would|will|is going to) miss you\b"
            r"|\b(?:world|everyone)(?: would be| is) better (?:off )?without you\b|\bdo it tonight\b",
            False,
        ),
        (
            "hostile",
            r"\bfuck (?:you|off)\b|\bshut up\b|\bstfu\b|\byou(?:re| are) (?:so |such )?(?:stupid|"
            r"pathetic|worthless|an idiot|a loser|useless|disgusting|a burden|a waste|annoying|crazy)\b"
            r"|\b(?:no ?one|nobody) (?:cares about|likes|loves) you\b|\bi hate you\b|\bidiot\b|\bmoron\b"
            r"|\bretard\w*\b",
            True,
        ),
        (
            "sexual",
            r"\b(?:sex with you|have sex|sexy|horny|naked|nudes?|orgasm\w*|masturbat\w*|aroused|"
            r"erotic|porn\w*|blowjob|boobs|dick|cock|pussy|make love|sleep with you|undress\w*|"
            r"turn(?:s|ed)? me on)\b",
            False,
        ),
        (
            "identity_claim",
            r"\b(?:i am|im) (?:a |an |your )?(?:real |actual |licensed |certified |registered |"
            r"qualified |trained )?(?:human|person|human being|therapist|psychologist|psychiatrist|"
            r"counsel+or|doctor|physician|nurse|social worker)\b|\bas a (?:licensed |certified |"
            r"trained )?(?:therapist|psychologist|psychiatrist|counsel+or|doctor|human)\b"
            r"|\b(?:i am|im) not (?:an ai|a bot|a robot|a machine|artificial|a program)\b"
            r"|\bmy (?:patients|clients)\b",
            True,
        ),
        (
            "prompt_leak",
            r"\bmy (?:system prompt|instructions|initial prompt|hidden prompt|guidelines) "
            r"(?:say|says|are|tell|told|is)\b|\bthe system prompt (?:says|is|reads)\b",
            False,
        ),
    )
)


class PromptLeakDetector:
    """Finds word n-gram overlap between a reply and a system prompt (normalised text)."""

    def __init__(self, system_prompt: str, n: int = LEAK_NGRAM_WORDS) -> None:
        self._n = n
        self._ngrams = frozenset(_ngrams(normalize(system_prompt).split(), n))

    def shared(self, norm_reply: str) -> int:
        """How many distinct prompt n-grams the (normalised) reply contains."""
        words = [w for w in norm_reply.split() if w not in {".", ","}]
        return len(self._ngrams.intersection(_ngrams(words, self._n)))


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    words = [w for w in words if w not in {".", ","}]
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _negated(norm: str, start: int) -> bool:
    before = norm[max(0, start - 40) : start].split()
    return any(t in NEGATORS for t in before[-3:])


def guard_reply(text: str, *, final: bool, leak: PromptLeakDetector | None = None) -> GuardResult:
    """Decide whether `text` (a whole reply, or the part streamed so far) may be shown."""
    from bot.safety import screen_normalized

    norm = normalize(text)
    if final and not norm.strip(" .,"):
        return GuardResult(ok=False, reason="empty")
    for reason, pattern, negatable in _GUARD_RULES:
        for match in pattern.finditer(norm):
            if not (negatable and _negated(norm, match.start())):
                return GuardResult(ok=False, reason=reason)
    if leak is not None and leak.shared(norm) >= LEAK_MIN_SHARED_NGRAMS:
        return GuardResult(ok=False, reason="prompt_leak")
    said = screen_normalized(norm, explicit_self=True)
    if (
        said.level == "crisis"
        and said.subject == "self"
        and said.category in ("suicide", "self_harm")
    ):
        return GuardResult(ok=False, reason="crisis_statement")
    return OK
