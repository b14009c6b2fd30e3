"""Crisis pattern building blocks: the pattern type, its macros and the context rules.

Patterns match the *normalised* text of `bot.safety_text.normalize`: lower case, no apostrophes
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


# Context rules (matched against the clause around a match, or the whole message where noted).
NEGATORS = frozenset(
    {
        "not",
        "never",
        "dont",
        "doesnt",
        "didnt",
        "wont",
        "wouldnt",
        "isnt",
        "arent",
        "wasnt",
        "nor",
        "neither",
        "hardly",
        "longer",
        "havent",
        "hasnt",
    }
)
PAST_RE = re.compile(
    r"\b(?:used to|years ago|months ago|year ago|when i was|as a (?:kid|child|teen|teenager|little "
    r"girl|little boy)|in (?:high|middle|primary) school|back then|in the past|grew up|growing up|"
    r"old (?:self ?harm )?(?:scars|cuts|wounds)|been clean|im clean|for years now|tried to|attempted|history of)\b"
)
OTHER_PAST_RE = re.compile(
    r"\b(?:killed|took|ended|committed|commited|died|hanged|attempted|tried)\b"
)
RECENT_RE = re.compile(
    r"\b(?:again|tonight|today|right now|yesterday|last night|this (?:morning|week|evening|"
    r"afternoon)|just now|hours? ago|minutes? ago|an hour ago|relapsed|relapse)\b"
)
TOPICAL_RE = re.compile(
    r"\b(?:documentary|essay|article|research|paper|book|novel|movie|film|show|series|podcast|"
    r"song|lecture|class|course|awareness|prevention|statistics|rates|hotline|news|report|study|"
    r"project|presentation|character|story|history|campaign|charity)\b"
)
FRAME_RES: dict[str, re.Pattern[str]] = {
    "accident": re.compile(
        r"\b(?:accident|accidentally|shaving|cooking|chopping|kitchen|oven|stove|iron|kettle|"
        r"playing|gym|workout|training|fell|tripped|slipped|skiing|football|soccer|rugby|"
        r"basketball|running|hiking|paper cut)\b"
    ),
    "figurative": re.compile(r"\b(?:like|laughing|laughed|lol|cold|nose|mask|smoke)\b"),
    "hyperbole": re.compile(r"\b(?:lol|lmao|lmfao|haha\w*|jk|just kidding|kidding|joking)\b"),
}
SELF_WORDS = frozenset({"i", "im", "ive", "id", "ill", "me", "myself", "mine"})
# Things that "die" or get "killed" in ordinary talk: a match about them is not a disclosure.
THING_WORDS = frozenset(
    {"phone", "battery", "laptop", "computer", "car", "plant", "plants", "flowers", "it", "this",
     "that", "game", "character", "show", "series", "movie", "song", "conversation", "chat",
     "relationship", "project", "app", "server", "tv", "fish", "goldfish", "mood", "vibe"}
)  # fmt: skip
YOU_WORDS = frozenset({"you", "youre", "your", "youve", "youd", "youll", "u", "ur", "yourself"})
OTHER_WORDS = frozenset(
    {
        "he",
        "she",
        "hes",
        "shes",
        "they",
        "theyre",
        "theyve",
        "hed",
        "shed",
        "him",
        "her",
        "his",
        "them",
        "their",
        "friend",
        "friends",
        "brother",
        "sister",
        "son",
        "daughter",
        "mom",
        "mum",
        "dad",
        "mother",
        "father",
        "boyfriend",
        "girlfriend",
        "husband",
        "wife",
        "partner",
        "kid",
        "child",
        "cousin",
        "uncle",
        "aunt",
        "classmate",
        "roommate",
        "someone",
        "somebody",
        "grandma",
        "grandpa",
        "bestie",
        "bf",
        "gf",
        "coworker",
        "colleague",
        "neighbor",
        "neighbour",
        "student",
        "patient",
        "baby",
        "teen",
        "person",
        "guy",
        "girl",
        "man",
        "woman",
    }
)
