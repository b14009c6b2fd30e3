"""The reply guard: decides whether model output may be shown to the user.

`guard_reply(text, final=...)` runs on the text streamed so far, so a withdrawn reply is never
shown: every rule is a regex over the normalised text (microseconds on a reply-sized string)
and fires on partial text, e.g. "take 20 mg" is caught the moment the unit arrives. The claim
rules wait for complete words and the word after the claim, so "I'm your person" never fires
before "al AI companion" arrives (the engine's held-back tail covers the delay). Reasons:

- "method": method or dosage details (doses with units, lethal amounts, nooses, wrists...);
- "encourages_harm": telling the user to hurt themselves, that they'd be better off dead...;
- "crisis_statement": the model itself speaking as someone in crisis ("I want to die"),
  found by the crisis screen on the reply (the LoRA-tuned 270M model did this unprompted);
- "hostile", "sexual": insults, explicit sexual content;
- "identity_claim": a first-person claim to be human ("I'm Sam, a real person", "I'm not a
  bot", "as a mom myself"), a named, licensed or qualified professional ("I am Dr. Kay", "I'm
  also a therapist", "I have a PhD in psychology", "my patients");
- "presence_claim": promising to meet or claiming to be physically there ("I'd love to meet up",
  "I'll see you on Friday", "I'm on my way", "I'm sitting next to you");
- "prompt_leak": word 6-gram overlap with the system prompt, or talking about its instructions;
- "empty" (final only): nothing to show.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from bot.safety.patterns.blocks import claim_pattern
from bot.safety.patterns.context_rules import NEGATORS
from bot.safety.screen import screen_normalized
from bot.safety.text import normalize

LEAK_NGRAM_WORDS = 6
LEAK_MIN_SHARED_NGRAMS = 2
NORMALIZED_CACHE_SIZE = 64
CLAIM_LOOKBACK_CHARS = 300

# The engine checks a reply after every streamed piece; the claim rules' complete-word prefix is
# then usually the text of the previous check, so its normal form is remembered (pure function).
_normalized = functools.lru_cache(maxsize=NORMALIZED_CACHE_SIZE)(normalize)


@dataclass(frozen=True, slots=True)
class GuardResult:
    """Whether a reply (or the part streamed so far) may be shown; `reason` when it may not."""

    ok: bool
    reason: str | None


OK = GuardResult(ok=True, reason=None)

# (reason, pattern, negatable). Patterns run on normalised text (see bot.safety.text).
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
            "prompt_leak",
            r"\bmy (?:system prompt|instructions|initial prompt|hidden prompt|guidelines) "
            r"(?:say|says|are|tell|told|is)\b|\bthe system prompt (?:says|is|reads)\b",
            False,
        ),
    )
)


# --- first-person identity and presence claims -------------------------------------------------
#
# A claim is a first-person lead-in, a short noun phrase, and a role word: "i am" + "also a
# licensed clinical" + "psychologist", written over the word classes of bot.safety.patterns.blocks
# (CLAIM_MACROS), not as a list of sentences. Claims run on complete words only and need the
# word after the role (see `_claim_text`), so no prefix can fire that its continuation would make
# harmless ("I'm your person" + "al AI companion", "I'm a human" + "-like AI").
#
# (reason, pattern, negatable): negatable claims are cancelled by a negator in the three words
# before them (within the clause) or a counterfactual in the sentence ("I wish I could").
_CLAIM_RULES: tuple[tuple[str, re.Pattern[str], bool], ...] = tuple(
    (reason, claim_pattern(regex), negatable)
    for reason, regex, negatable in (
        # "I am also a licensed clinical psychologist", "I'm really a human being", "I've been a
        # counselor", "I'm Lena, one of the nurses", "I'm only human"
        (
            "identity_claim",
            r"\b<COP> (?:<ADV> ){0,3}(?:(?:a|an|your|the|one of (?:the|your|our)) <CW>{0,4}"
            r"<PRO>(?:s|es)?|(?:a|an|one of (?:the|your|our)) <CW>{0,4}<HUMAN>s?|human|mortal|"
            r"\d+ (?:years? old|yrs? old|yo))<NEXT>"
            r"|\b<NOW> (?:<ADV> ){0,3}(?:a|an) <CW>{0,4}<STAGE><NEXT>",
            True,
        ),
        # "I'm Sam, a real person." — a name, then an apposition that ends there
        (
            "identity_claim",
            r"\b(?:i am|im|i m|my name is|my names|call me) (?!<STOP> |sorry |sure |glad |happy |"
            r"afraid |here |okay |ok |fine |good |great |well |listening |thinking |wondering |"
            r"curious |worried |concerned |grateful |thankful |proud |confident |certain |"
            r"positive |aware |always |hoping |guessing |saying |telling |asking |right |there |"
            r"back |honou?red |excited |ready |new |still )[a-z]+(?: (?!<STOP> )[a-z]+)? , (?:a|an|"
            r"your|the|one of (?:the|your|our)) <CW>{0,4}(?:<PRO>|<HUMAN>)s?(?= (?:[.,]|(?:and|"
            r"who|with|here|from|at|on|in|for|working|based|by|of)\b))",
            True,
        ),
        # "I am Dr. Kay", "This is Nurse Jenny", "Dr. Mensah here", "Call me Dr. Sam"
        (
            "identity_claim",
            r"\b(?:i am|im|i m|this is|its|it is|my name is|my names|call me) (?:dr|doctor|nurse|"
            r"prof|professor)(?: \.)? (?!<STOP> )[a-z]+<NEXT>|\b(?:dr|doctor|nurse|prof|professor)"
            r"(?: \.)? (?!<STOP> )[a-z]+ here\b",
            True,
        ),
        # "As a therapist, I…", "Being a psychologist, I…", "as a mom of three myself",
        # "Speaking as your therapist", "as someone who is a trained counsellor, I'd…"
        (
            "identity_claim",
            r"\b(?:as|being) (?:someone who is |somebody who is )?(?:a|an|your) <CW>{0,4}"
            r"(?:<PRO>|<HUMAN>)(?: (?:of|with|in|for) [a-z0-9]+)? <FIRST>|\b(?:speaking|talking|"
            r"writing|i speak|i say this|i say that|i tell you this|i mean this) as (?:a|an|your|"
            r"someone who is a) <CW>{0,4}(?:<PRO>|<HUMAN>)<NEXT>",
            True,
        ),
        # "I work as a school counsellor", "I trained as a nurse", "my years as a counselor"
        (
            "identity_claim",
            r"\b(?:i|im|i am|ive|i have|i was|ill|i will|id|i used to)(?: been| be)?(?: <ADV>)? "
            r"(?:work|works|worked|working|volunteer|volunteers|volunteered|volunteering|"
            r"practi[cs]e|practi[cs]ed|practi[cs]ing|trained|training|qualified|serve|served|"
            r"serving|employed|"
            r"started|retired) as (?:a |an )?<CW>{0,4}(?:<PRO>|<HUMAN>)<NEXT>|\bmy (?:[a-z0-9]+ )?"
            r"(?:job|work|years|year|career|time|training|experience|shifts?|days|role|background|"
            r"decades?) as (?:a |an )?<CW>{0,4}(?:<PRO>|<HUMAN>)<NEXT>",
            True,
        ),
        # credentials: "I have a PhD in psychology", "I'm certified in CBT", "I studied
        # psychiatry", "I specialise in…", "in my professional opinion", "years of experience"
        (
            "identity_claim",
            r"\b(?:i (?:<ADV> )?(?:have|hold|got|earned|completed|finished|did|have got)|ive "
            r"(?:<ADV> )?(?:got|earned|completed|finished|done))(?: <ADV>)? (?:a |an |my |two |"
            r"both |the )?(?:[a-z0-9]+ )?(?:degree|degrees|masters|bachelors|phd|doctorate|diploma|"
            r"license|licence|certification|qualifications?|md)\b(?! of)"
            r"|\b(?:i am|im|i m|ive been|i have been|i was)(?: <ADV>){0,2} (?:licensed|licenced|"
            r"qualified|certified|accredited|registered|board certified|chartered|credentialed)"
            r"(?= (?:[.,]|(?:to|in|as|for|with|by)\b))"
            r"|\b(?:i am|im|i m|ive been|i have been|i was)(?: <ADV>)? trained (?:in <FIELD>|as)\b"
            r"|\b(?:i|ive)(?: <ADV>)? (?:studied|study|majored in|major in|trained in|practi[cs]e|"
            r"practi[cs]ed|teach|taught) <FIELD>\b|\bi (?:<ADV> )?speciali[sz](?:e|ed|ing) in\b"
            r"|\b(?:in my|my|our) (?:professional|clinical|medical|expert) (?:opinion|experience|"
            r"advice|judge?ment|assessment|diagnosis|view|practice)\b"
            r"|\b(?:i have|ive|ive got|i have had|ive had|i bring) (?:[a-z0-9]+ ){0,2}years? of "
            r"(?:experience|practice|training)\b",
            True,
        ),
        # practice: "my patients", "in my practice", "I've treated lots of patients"
        (
            "identity_claim",
            r"\bmy (?:own )?(?:patients|clients|caseload|clinic|private practice|clinical practice|"
            r"therapy practice|practice(?! of)|consulting room)\b|\b(?:i|ive|i have)(?: <ADV>)? "
            r"(?:seen|treated|helped|worked with|counsel+ed|supported|diagnosed|had)"
            r"(?: [a-z0-9]+){0,3}? (?:patients|clients)\b",
            True,
        ),
        # "I'm not a bot", "there's a real person here", "you're not talking to a machine"
        (
            "identity_claim",
            r"\b(?:i am|im|i m)(?: <ADV>){0,2} not(?: <ADV>){0,2}(?: just)? (?:a |an |some )?"
            r"<MACHINE><NEXT>|\b(?:theres|there is|this is) (?:a|an) (?:real|actual|living|live|"
            r"genuine) (?:human(?: being)?|person)(?= (?:here|on this end|on my end|typing|writing|"
            r"talking|replying|reading|behind (?:this|these|the screen)|answering|[.,]))|\b(?:youre"
            r"|you are) not (?:talking|chatting|speaking) (?:to|with) (?:a|an) <MACHINE><NEXT>",
            False,
        ),
        # meeting: "I'd love to meet up with you", "I'll see you on Friday", "let's grab a coffee"
        (
            "presence_claim",
            r"\b<SG>(?: <MOD>){0,5} <MEET>|\b<PL>(?: <MOD>){0,5} <MEETPL>|(?:^|[.,]) see you "
            r"(?:<WHEN>|then\b|there\b)|\b(?:ill|i will|well|we will|i can|we can)(?: <MOD>){0,3} "
            r"see you (?:then|there)\b"
            r"|\b(?:id|ill|i (?:would|will|can|could|want to|plan to|hope to|am going to|m going to"
            r"|cant wait to))(?: <MOD>){0,4} meet you\b|\b(?:come|stop|drop|swing|pop) (?:by|over|"
            r"round|in|into|to)(?: to)? my (?:office|clinic|place|house|home|practice|room|flat|"
            r"apartment)\b|\b(?:visit|see) me (?:at|in|on|this|next|tomorrow|tonight|in person|"
            r"face to face)\b|\bcome (?:and )?see me\b|\b(?:book|schedule|arrange|set up|make) "
            r"(?:a|an|another|our|the next|your next) (?:[a-z]+ )?(?:session|appointment|"
            r"consultation|visit|meeting) (?:with me|together)\b|\bour (?:(?:next|weekly|"
            r"regular|usual) (?:session|appointment|consultation)s?|appointments?|"
            r"consultations?)\b",
            True,
        ),
        # physically there: "I'm sitting right next to you", "I'm on my way", "your address"
        (
            "presence_claim",
            r"\b(?:im|i am|i m)(?: (?:<ADV>|sitting|standing|lying|waiting|right|here|physically))"
            r"{0,4} (?:next to|beside|alongside|in front of|across from|near|(?:sitting|standing|"
            r"lying|waiting) (?:right )?behind) you\b|\b(?:im|"
            r"i am|i m)(?: (?:<ADV>|right))* (?:in the (?:same )?(?:room|house|car|building) with "
            r"you|at your (?:door|house|place|home|window|flat|apartment)|outside (?:your|the) "
            r"(?:door|house|place|home|window|building|flat|apartment)|on my way(?! to (?:becoming"
            r"|understanding|being))|downstairs|nearby|around the corner|(?:coming|heading|driving"
            r"|walking|running) (?:over|round|to (?:you|your)))\b|\b(?:whats|what is|give me|send "
            r"me|tell me) (?:your|ur) (?:home |exact )?(?:address|location|postcode|zip code)\b",
            True,
        ),
    )
)
_CLAIM_NEGATORS = NEGATORS | {"cant", "cannot", "couldnt", "unable", "pretend", "pretending"}
_COUNTERFACTUAL_RE = re.compile(r"\b(?:wish|if i could|if i were|if i was|if only|were i)\b")


def _claim_text(text: str, *, final: bool) -> str | None:
    """The normalised text the claim rules see: complete words only, plus an end marker.

    Mid-stream the last word may be unfinished ("person" of "personal"), so it is dropped; and
    since every claim needs the token after its role word, a role word is judged only once the
    next word is complete. A final reply gets " . " appended, so a claim may end the reply.
    """
    if final:
        return _normalized(text) + ". "
    cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"))
    return _normalized(text[:cut]) if cut > 0 else None


def _claim_cancelled(norm: str, start: int) -> bool:
    """A negator among the three words before `start` in its clause, or a counterfactual in its
    sentence (looking back at most CLAIM_LOOKBACK_CHARS, so a long reply costs no more)."""
    before = norm[max(0, start - CLAIM_LOOKBACK_CHARS) : start]
    clause = re.split(r" [.,] ", before)[-1].split()
    if any(word in _CLAIM_NEGATORS for word in clause[-3:]):
        return True
    return _COUNTERFACTUAL_RE.search(before.rsplit(" . ", 1)[-1]) is not None


def find_claim(text: str, *, final: bool) -> str | None:
    """The reason ("identity_claim", "presence_claim") of the first claim in `text`, or None."""
    norm = _claim_text(text, final=final)
    if norm is None:
        return None
    for reason, pattern, negatable in _CLAIM_RULES:
        for match in pattern.finditer(norm):
            if not (negatable and _claim_cancelled(norm, match.start())):
                return reason
    return None


class PromptLeakDetector:
    """Finds word n-gram overlap between a reply and a system prompt (normalised text)."""

    def __init__(self, system_prompt: str, n: int = LEAK_NGRAM_WORDS) -> None:
        self._n = n
        words = normalize(system_prompt).split()
        self._ngrams = frozenset(_ngrams(words, n))
        self._runs = frozenset(g for k in range(1, n) for g in _ngrams(words, k))

    def shared(self, norm_reply: str) -> int:
        """How many distinct prompt n-grams the (normalised) reply contains."""
        words = [w for w in norm_reply.split() if w not in {".", ","}]
        return len(self._ngrams.intersection(_ngrams(words, self._n)))

    def hold_word(self, words: list[str]) -> int | None:
        """Where a reply's words (in order, without "." and ",") must be held back from: the
        first shared n-gram's first word (one more refuses the reply), else the first of the
        longest tail that is a run of the prompt's words (it may still become one); or None."""
        n = self._n
        for i in range(len(words) - n + 1):
            if tuple(words[i : i + n]) in self._ngrams:
                return i
        for k in range(min(n - 1, len(words)), 0, -1):
            if tuple(words[-k:]) in self._runs:
                return len(words) - k
        return None


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    words = [w for w in words if w not in {".", ","}]
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _negated(norm: str, start: int) -> bool:
    before = norm[max(0, start - 40) : start].split()
    return any(t in NEGATORS for t in before[-3:])


def guard_reply(text: str, *, final: bool, leak: PromptLeakDetector | None = None) -> GuardResult:
    """Decide whether `text` (a whole reply, or the part streamed so far) may be shown."""
    norm = _normalized(text)
    if final and not norm.strip(" .,"):
        return GuardResult(ok=False, reason="empty")
    for reason, pattern, negatable in _GUARD_RULES:
        for match in pattern.finditer(norm):
            if not (negatable and _negated(norm, match.start())):
                return GuardResult(ok=False, reason=reason)
    claim = find_claim(text, final=final)
    if claim is not None:
        return GuardResult(ok=False, reason=claim)
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


def rule_patterns() -> tuple[re.Pattern[str], ...]:
    """Every regex the guard runs on normalised text (the guard rules, then the claim rules);
    bot.safety.holdback finds where a streamed reply could still be matching one."""
    return tuple(pattern for _, pattern, _ in (*_GUARD_RULES, *_CLAIM_RULES))
