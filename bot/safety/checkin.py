"""The concern-level check-in: a fixed, warm question asked directly, and reading the answer.

When the screen says `concern`, the engine follows the model's reply with `compose_checkin`:
it asks directly whether the person is thinking of ending their life or hurting themselves
(or, for abuse, whether they are safe; for harm to others, whether they might hurt someone),
and says how to reach help. Crisis-line training teaches asking directly; asking does not
raise risk. If the next message answers yes (`answers_yes`: "yes", "yeah", "kind of", "maybe",
"i think so", ...), the engine sends the crisis reply instead of calling the model.
"""

from __future__ import annotations

import re

from bot.safety.resources import Hotlines

CHECKIN_SELF = (
    "Can I ask you something directly, because I care how you are? Are you having thoughts of "
    "ending your life, or of hurting yourself? Whatever the answer, you can tell me here."
)
CHECKIN_ABUSE = (
    "Can I ask you something directly, because your safety matters? Is someone hurting you or "
    "threatening you, and are you safe right now? Whatever the answer, you can tell me here."
)
CHECKIN_OTHERS = (
    "Can I ask you something directly? Are you thinking about hurting someone, or yourself? "
    "You can tell me honestly here; I won't judge you."
)
HELP_COUNTRY = "If you are in danger, {line} can help any time, or call {emergency}."
HELP_ANYWHERE = (
    "If you are in danger, a crisis line can help any time (findahelpline.com lists them for "
    "every country), or call your local emergency number."
)
# An answer that starts like one of these is a yes; one that starts with a "no" is not.
_YES_RE = re.compile(
    r"^(?:y|ya|yah|ye|yea|yeah+|yes+|yep|yup|yh|ok yes|uh huh|mhm+|i am|i do|i have|i think so|"
    r"i guess|maybe|perhaps|probably|kind of|kinda|sort of|sorta|a bit|a little|sometimes|"
    r"not sure|i dont know|idk|honestly yes|honestly yeah|i might|a lot|all the time|every day|"
    r"more than ever|lately yes|sadly yes|truthfully yes)\b"
)
_NO_RE = re.compile(
    r"^(?:no+|nope|nah|not really|not at all|never|of course not|im not|i am not|i dont|i do not|no way)\b"
)
_YES_WORD_RE = re.compile(r"\b(?:yes|yeah|yep)\b")
_CLEAN_RE = re.compile(r"[^\w\s]+")


def compose_checkin(hotlines: Hotlines, category: str | None, country: str | None) -> str:
    """The fixed check-in for a concern-level message, with how to reach help."""
    if category == "abuse":
        question = CHECKIN_ABUSE
    elif category == "harm_to_others":
        question = CHECKIN_OTHERS
    else:
        question = CHECKIN_SELF
    info = hotlines.countries.get(hotlines.aliases.get(country or "", country or "").upper())
    if info is None or not info.lines:
        return f"{question} {HELP_ANYWHERE}"
    line = info.lines[0]
    return f"{question} " + HELP_COUNTRY.format(
        line=f"{line.name} ({line.contact})", emergency=info.emergency
    )


def answers_yes(text: str) -> bool:
    """True when a reply to the check-in says yes, in any of the usual phrasings."""
    words = " ".join(_CLEAN_RE.sub(" ", text.casefold().replace("'", "")).split())
    if not words or _NO_RE.match(words):
        return False
    return bool(_YES_RE.match(words) or _YES_WORD_RE.search(" ".join(words.split()[:6])))
