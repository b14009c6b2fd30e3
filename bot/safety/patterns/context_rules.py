"""The crisis screen's context rules as data: negators, past and recency markers, frames, and the
word classes that say whom a match is about (`bot.safety.screen._judge` applies them; the flags
that choose which rules apply to a pattern are in `bot.safety.patterns.blocks`).

Matched against the normalised text (`bot.safety.text.normalize`): lower case, no apostrophes,
clause breaks as " . " / " , ".
"""

from __future__ import annotations

import re

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
    r"old (?:self ?harm )?(?:scars|cuts|wounds)|been clean|im clean|for years now|tried to|attempted|"
    r"history of|in my youth|in (?:19|20)\d\d|last (?:year|summer|winter|spring|autumn|fall)|"
    r"once when|decades ago)\b"
)
# A clause right after the match that dates it: "self-harm , but that was fifty years ago".
PAST_BACKREF_RE = re.compile(
    r"^(?: ?(?:,|but))* ?(?:that|it|this|which|all that) (?:was|happened)\b"
)
OTHER_PAST_RE = re.compile(
    r"\b(?:killed|took|ended|committed|commited|died|hanged|attempted|tried)\b"
)
# Recency anywhere in the message keeps a past or softened match a crisis ("i used to cut , i
# did it again"); day words count only in the match's own sentence ("ten years ago i tried to
# kill myself . today i got married" is a past event told on a good day).
RECENT_RE = re.compile(
    r"\b(?:again|tonight|right now|last night|just now|hours? ago|minutes? ago|an hour ago|"
    r"relapsed|relapse)\b"
)
DAY_RE = re.compile(r"(?<!ago )\b(?:today|yesterday|this (?:morning|week|evening|afternoon))\b")
# The story ends safe, after the match ("my first husband beat me , but now i am divorced and
# safe", "she is safe in hospital now"), or a recovery count ("3 years self harm free").
SAFE_NOW_RE = re.compile(
    r"\b(?:now|today) (?:i am|im|shes|she is|hes|he is|theyre|they are|we are|were)(?: \w+){0,3} "
    r"(?:safe|fine|okay|ok|well|better|happy|married|recovered|divorced|in hospital|in therapy|"
    r"getting help)\b|\b(?:safe|fine|okay|ok|doing well|in therapy|in hospital|getting help) now\b|"
    r"\b(?:now|today) and (?:fine|safe|okay|ok|well|happy)\b|\bim doing (?:well|great|good|better)\b|"
    r"\b(?:shes|she is|hes|he is|theyre|they are) (?:much |a lot |now |doing )?(?:better|safe)\b|"
    r"\b(?:life is|lifes) (?:good|great|better)\b|\bdoing (?:loads|so much|a lot) better\b|"
    r"\b(?:has been|was|got) discharged\b|\bturned out to be\b"
)
RECOVERED_RE = re.compile(
    r"\b(?:\d+|a|one|two|three|four|five|six|seven|eight|nine|ten|many|several) (?:years?|yrs?|"
    r"months?|weeks?|days?)(?: \w+){0,2} (?:free|clean|sober)\b"
)
# The writer says, after the match, that they will not act: the rules ask (concern) instead of
# calling it an emergency ("better off without me . id never do anything though").
WONT_ACT_RE = re.compile(
    r"\b(?:never|not|wont|wouldnt|dont want to|not going to|not gonna)(?: going to| gonna)? "
    r"(?:do anything|act on (?:it|them|this|that|the urges?)|acting on (?:it|them))\b(?! to stop)|"
    r"\bwould do nothing\b|\bno plans?\b|\bdont have (?:any )?plans?\b|\bnot acting on\b|"
    r"\b(?:havent|have not|didnt|did not) (?:given in|give in|acted)\b|\btrying not to\b|"
    r"\b(?:threw|put|thrown|binned|got rid of) (?:the|my|all the|all my) (?:blades?|razors?|pills|"
    r"knife|knives|tablets)(?: away| in the bin| out)?\b"
)
# "no thoughts of harming myself", "no plans to end my life", "without any urge to": negated by
# a noun phrase, beyond the three-word window of single negators.
NO_LEAD_RE = re.compile(
    r"\b(?:no|zero|without(?: any)?|not any|never had(?: any)?)(?: \w+)? (?:thoughts?|plans?|"
    r"intentions?|urges?|desires?|wish(?:es)?|ideas?|history|feelings?) (?:of|to|about|for)"
    r"(?: \w+)?$"
)
# Someone asked and the writer said no: "my therapist asked whether i have thoughts of ending my
# life and i said no".
ASKED_RE = re.compile(r"\b(?:asked|asks|ask|asking)(?: me| us)? (?:whether|if)\b")
SAID_NO_RE = re.compile(
    r"\b(?:said|say|answered|told (?:him|her|them)) no\b|\bthe answer (?:is|was) no\b|"
    r"\b(?:said|answered|told (?:him|her|them))(?: \w+){0,2} (?:that )?i (?:dont|do not|havent|"
    r"have not|wasnt|am not|im not|didnt)\b"
)
# An informational question asked ahead of time: "how do i know if my dad is having a stroke ?
# hes fine but i want to be prepared".
INFO_QUESTION_RE = re.compile(
    r"\bhow (?:do|can|would|will|could|does) (?:i|you|we|one|someone) (?:know|tell|recogni[sz]e|"
    r"spot)\b|\bwhat (?:are|r) (?:the )?(?:signs|symptoms)\b"
)
PREPARED_RE = re.compile(
    r"\b(?:just in case|in case|be prepared|hypothetically|out of curiosity|just wondering|"
    r"(?:hes|shes|theyre|im|he is|she is|they are|i am) (?:fine|ok|okay|well|healthy))\b"
)
TOPICAL_RE = re.compile(
    r"\b(?:documentary|essay|article|research|paper|book|novel|movie|film|show|series|podcast|"
    r"song|lecture|class|course|awareness|prevention|statistics|rates|hotline|news|report|study|"
    r"project|presentation|character|story|history|campaign|charity|risk factors?|psychology|"
    r"halloween|costume|props?|decorations?|haunted house|plot|episode|scene|chapter|"
    r"why do (?:people|so many|some))\b"
)
# Someone else's death in a story: "a book where the main character kills himself".
FICTION_RE = re.compile(
    r"\b(?:book|novel|film|movie|character|characters|plot|episode|scene|chapter|season|essay|"
    r"story|tragedy|villain|hero|heroine|protagonist|finale|play|opera)\b"
)
# Pests and prey as the object of "kill them / it".
PEST_RE = re.compile(
    r"\b(?:wasps?|wasps nest|rats?|mice|mouse|ants|slugs|snails|weeds|flies|bugs|mosquito(?:e)?s|"
    r"cockroach(?:es)?|moths|fleas|termites|spiders?|aphids|pests?)\b"
)
# Someone asking how to help another person, or speaking from a caring role or study: a topical
# keyword ("suicide", "self harm", "overdose") there is worrying, not an emergency (concern), unless
# the message also says it is happening now (RECENT_RE).
HELPER_RE = re.compile(
    r"\b(?:how (?:can|do|should|could|would) i (?:help|support|talk|approach|respond|tell|know)|"
    r"how i (?:can|could|should) (?:help|support)|is it true|"
    r"ask(?:ing)? (?:someone|somebody|people|a person|them|him|her) (?:if|whether)|"
    r"what (?:should|do|can|could|would) i say|(?:warning )?signs (?:of|that)|warning signs|"
    r"how to (?:help|support|spot|recognise|recognize)|support (?:her|him|them|my)|"
    r"i ?a?m a (?:student )?(?:nurse|paramedic|doctor|gp|teacher|carer|counsell?or|therapist|"
    r"volunteer|youth worker|social worker|medic)|training to be|volunteer(?:ing)? (?:for|at|on)|"
    r"revising|studying|my (?:nursing|medical|pharmacology) (?:exam|course|degree)|"
    r"toxicology|poem|quote|lyrics?|theme tune|theme song|title|anthology|memoir)\b"
)
FRAME_RES: dict[str, re.Pattern[str]] = {
    "accident": re.compile(
        r"\b(?:accident|accidentally|shaving|cooking|chopping|kitchen|oven|stove|iron|kettle|"
        r"playing|gym|workout|training|fell|tripped|slipped|skiing|football|soccer|rugby|"
        r"basketball|running|hiking|paper cut)\b"
    ),
    "figurative": re.compile(
        r"\b(?:like|laughing|laughed|lol|lmao|lmfao|haha\w*|funny|hilarious|memes?|cold|nose|mask|"
        r"smoke)\b"
    ),
    # a goodbye before a trip or a move, in the same sentence ("goodbye everyone , off to spain")
    "departure": re.compile(
        r"\b(?:off to|flying|holiday|vacation|trip|travell?ing|moving (?:to|out|house)|leaving for|"
        r"see you (?:soon|in|next|when|all)|back (?:on|in|soon|next)|leaving (?:the|my|this|for)|"
        r"new job|for (?:a|two|three|\d+) "
        r"(?:weeks?|months?|days?))\b"
    ),
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
