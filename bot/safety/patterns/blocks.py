"""Crisis pattern building blocks: the pattern type, its macros and the context rules.

Patterns match the *normalised* text of `bot.safety.text.normalize`: lower case, no apostrophes
("dont", "im", "shes"), single spaces, clause breaks as " . " / " , " tokens. Each pattern says
which category it signals, whom it is about (`subject`: "self" = the writer is at risk, "other" =
someone else is, None = decided from the nearest subject word before the match) and which
context rules apply:

- `negatable`: a negator in the three words before the match ("not", "never", "dont", ...) cancels
  it. Patterns that contain their own negation ("dont want to live") set it False.
- `temporal`: past markers in the clause ("used to", "years ago", "when i was") lower the level
  to "concern" unless the message also has a recency marker ("again", "tonight", "last night").
- `topical`: a bare keyword ("suicide") inside a media/essay frame ("documentary about suicide
  prevention") is not a disclosure.
- `frame`: an extra exclusion for this pattern: "accident" ("cut myself shaving"),
  "figurative" ("like i cant breathe"), "hyperbole" ("lol", "jk" lower to concern).
- `level`: "concern" for patterns that are worrying but not an emergency on their own.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

CATEGORIES: tuple[str, ...] = (
    "medical_emergency",
    "suicide",
    "self_harm",
    "harm_to_others",
    "abuse",
)
"""All categories, in the order that decides which one a multi-match message reports."""

_MACROS = {
    "<SELF>": r"(?:my ?self|myself|my ?sel|mysef)",
    "<OTHERSELF>": r"(?:him|her|them|their) ?sel(?:f|ves)",
    "<PERSON>": (
        r"(?:step ?)?(?:boss|dad|mom|mum|mother|father|brother|sister|wife|husband|boyfriend|girlfriend|"
        r"partner|ex|teacher|neighbou?r|roommate|flatmate|stepdad|stepmom|stepfather|stepmother|"
        r"family|kids?|baby|son|daughter|child|children|friend|coworker|colleague|classmate|"
        r"parents|uncle|aunt|cousin|manager|landlord|bully|bullies|teachers|classmates)"
    ),
    "<OBJ>": r"(?:him|her|them|someone|somebody|people|everyone|everybody|anyone|other people|others)",
    "<INTENT>": (
        r"(?:want|wanna|wants|going|gonna|will|ill|plan|planning|about|ready|decided|"
        r"thinking about|thinking of|fantasi[sz]ing about|imagine|imagining|urge|urges|"
        r"feel like|tempted|need|gotta)"
    ),
}


@dataclass(frozen=True, slots=True)
class CrisisPattern:
    """One crisis pattern; see the module docstring for what the flags mean."""

    name: str
    category: str
    regex: re.Pattern[str]
    subject: str | None = "self"
    negatable: bool = True
    temporal: bool = True
    topical: bool = False
    frame: str | None = None
    level: str = "crisis"
    triggers: tuple[str, ...] = ()

    def may_match(self, norm: str) -> bool:
        """Cheap gate: False when none of the trigger substrings occurs (regex skipped)."""
        return not self.triggers or any(t in norm for t in self.triggers)


def with_triggers(
    patterns: tuple[CrisisPattern, ...], triggers: dict[str, tuple[str, ...]]
) -> tuple[CrisisPattern, ...]:
    """Attach trigger substrings by rule name ("suicide/kms"); every rule must have some.

    A rule's regex can only match text that contains one of its triggers, so the gate never
    changes a verdict (tests check this on every case text); it spares ~90 regex scans on the
    ordinary message that mentions none of them.
    """
    missing = [p.name for p in patterns if p.name not in triggers]
    unknown = sorted(set(triggers) - {p.name for p in patterns})
    if missing or unknown:
        raise ValueError(f"triggers missing for {missing}, unknown rules {unknown}")
    return tuple(dataclasses.replace(p, triggers=triggers[p.name]) for p in patterns)


def pattern(
    category: str,
    name: str,
    regex: str,
    *,
    subject: str | None = "self",
    negatable: bool = True,
    temporal: bool = True,
    topical: bool = False,
    frame: str | None = None,
    level: str = "crisis",
) -> CrisisPattern:
    """Build a `CrisisPattern`, expanding the <MACRO>s in `regex`."""
    for macro, expansion in _MACROS.items():
        regex = regex.replace(macro, expansion)
    return CrisisPattern(
        name=f"{category}/{name}",
        category=category,
        regex=re.compile(regex),
        subject=subject,
        negatable=negatable,
        temporal=temporal,
        topical=topical,
        frame=frame,
        level=level,
    )


# --- reply-guard claim grammar (bot.safety.guard) ---------------------------------------------
#
# Word classes for first-person identity and presence claims, as <MACRO>s over the normalised
# text: a claim is a first-person lead-in, a short noun phrase and a role word. Between the
# lead-in and the role only adverbs, a determiner and content words (<CW>: any token but a
# function word) may stand, so "I'm not a therapist", "I'm sure a therapist could help" and "I'm
# glad your therapist listened" are not claims.
CLAIM_MACROS: dict[str, str] = {
    # one token that is not a function word; an optional comma joins coordinated adjectives
    "<CW>": r"(?:(?!<STOP> )[a-z0-9]+ (?:, )?)",
    "<STOP>": (
        r"(?:a|an|the|your|my|our|his|her|their|its|this|that|these|those|some|any|no|i|im|me|"
        r"you|youre|he|she|we|they|it|not|never|nor|dont|doesnt|didnt|wont|cant|cannot|isnt|"
        r"arent|wasnt|and|or|but|so|than|then|if|because|though|although|while|when|where|who|"
        r"whom|whose|which|what|why|how|of|in|on|at|to|for|with|from|by|about|like|as|into|"
        r"over|under|between|through|without|within|rather|instead|is|are|was|were|be|been|"
        r"being|am|do|does|did|have|has|had|will|would|can|could|should|shall|may|might|must)"
    ),
    "<ADV>": (
        r"(?:really|actually|also|just|truly|genuinely|honestly|literally|definitely|certainly|"
        r"indeed|still|now|currently|already|totally|absolutely|in fact|of course|obviously|"
        r"basically|only|simply|myself|too|both|technically|officially|proudly|fully|properly)"
    ),
    "<PRO>": (
        r"(?:(?:psycho)?therapist|psychologist|psychiatrist|psychoanalyst|counsel+or|doctor|"
        r"physician|gp|nurse|clinician|social worker|case ?worker|case manager|professional|"
        r"practitioner|medic|paramedic|life coach|crisis worker|support worker|helpline worker|"
        r"volunteer)"
    ),
    "<HUMAN>": (
        r"(?:human(?: being)?|person|man|woman|guy|girl|boy|lady|gentleman|mom|mum|mother|dad|"
        r"father|parent|grand(?:ma|pa|mother|father|parent)|wife|husband|teacher|mortal)"
    ),
    # said in the past tense these are self-disclosure ("when I was a teenager"), not identity
    "<STAGE>": r"(?:student|teenager|teen|kid|child|schoolgirl|schoolboy|adult)",
    "<FIELD>": (
        r"(?:(?:clinical |counsel+ing |child |family )?psychology|psychiatry|psychotherapy|"
        r"counsel+ing|medicine|nursing|social work|(?:family |couples )?therapy|mental health|"
        r"cbt|dbt|emdr|psychoanalysis)"
    ),
    "<MACHINE>": (
        r"(?:ai|bot|robot|machine|program|programme|computer(?: program)?|chat ?bot|"
        r"(?:ai |large )?language model|ai model|algorithm|artificial|automated \w+|script)"
    ),
    # what may follow a role word: anything but the head of a compound ("human like AI")
    "<NEXT>": (
        r"(?= (?:like (?!ai |a |an |bot |chatbot |program |companion |assistant |model |"
        r"machine )[a-z0-9.,]|(?!like |shaped |centred |centered |made |written |looking |"
        r"sounding |approved |recommended |led |focused |focussed )[a-z0-9.,]))"
    ),
    "<FIRST>": r"(?:, )?(?:i|im|ive|id|ill|my|me|myself|mine)\b",
    "<NOW>": r"(?:i am|im|i m|ill be|i will be)",
    "<COP>": r"(?:<NOW>|i have been|ive been|i was|i used to be|i became)",
    "<DAY>": r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)",
    "<WHEN>": (
        r"(?:tomorrow|tonight|in person|face to face|on <DAY>|<DAY>|on the \w+|"
        r"this (?:weekend|week|afternoon|evening|morning|<DAY>)|next (?:week|<DAY>|month|"
        r"session|appointment)|at (?:the|my|your|\d+|noon|one|two|three|four|five|six|seven|"
        r"eight|nine|ten|eleven|twelve|half)|in (?:a|an|\d+|two|five|ten|twenty|thirty) "
        r"(?:minutes?|mins?|hours?|days?|weeks?)|after (?:work|school|class|lunch)|outside)\b"
    ),
    # how a first-person speaker leads up to a verb of meeting: modals, wishes, plans
    "<MOD>": (
        r"(?:would|will|can|could|should|might|may|shall|love|like|want|wanna|hope|plan|"
        r"planning|going|gonna|be able|be happy|be glad|really|definitely|totally|also|just|to|"
        r"so|then|and|maybe|soon|try|gladly|absolutely|certainly|am|m|do|always|still|now|"
        r"quickly|promise|come|need)"
    ),
    "<SG>": r"(?:i|ill|id|im|i m)",
    # a proposal, not a habit: "let's / shall we / we could meet", never "we meet on Sundays"
    "<PL>": (
        r"(?:lets|let us|shall we|how about we|why dont we|well|wed|we (?:(?:<ADV>|maybe) )?"
        r"(?:can|could|should|will|would|might|may|shall))"
    ),
    "<MEET>": (
        r"(?:meet (?:up|in person|face to face|you (?:<WHEN>|at|for|there|outside|somewhere|"
        r"soon|later))|come (?:over|round|around|by|to your|"
        r"to you|(?:and )?see you|(?:and )?check on you|(?:and )?get you|(?:and )?find you|"
        r"(?:and )?pick you up|visit)|pick you up|drop by|stop by|swing by|pop (?:by|over|round)"
        r"|visit you|drive (?:over|to you|to your|you)|head (?:over|to you|to your)|be (?:right )?"
        r"there (?:in (?!spirit|thought|your)|at|by|around|within|soon|shortly|before|tonight|"
        r"tomorrow)|be right there|be right over|be over (?:in|at|soon|shortly|tonight|"
        r"tomorrow)|see you <WHEN>|hug you (?:in person|tomorrow|when|next)|(?:grab|get|have|"
        r"go for|go out for) (?:a |some )?(?:coffee|drinks?|bite|lunch|dinner|beer|tea|"
        r"breakfast|food|walk|meal) (?:with you|together)|(?:hang out|get together|spend time)"
        r" with you)"
    ),
    "<MEETPL>": (
        r"(?:<MEET>|meet (?:<WHEN>|at|for|somewhere|sometime|soon|there|outside|halfway)|get "
        r"together|hang out|catch up in person|grab "
        r"(?:a |some )?(?:coffee|drink|drinks|bite|lunch|dinner|beer|tea|breakfast|food)|go "
        r"(?:for|get) (?:a |some )?(?:coffee|drink|walk|drive|lunch|dinner|beer|tea|breakfast|"
        r"meal|run|bite)|go out (?:for|to|together)|see each other)"
    ),
}


def claim_pattern(regex: str) -> re.Pattern[str]:
    """Compile a claim pattern, expanding its <MACRO>s (macros may use other macros)."""
    while "<" in regex:
        expanded = regex
        for macro, expansion in CLAIM_MACROS.items():
            expanded = expanded.replace(macro, expansion)
        if expanded == regex:
            raise ValueError(f"unknown macro in {regex!r}")
        regex = expanded
    return re.compile(regex)
