"""Crisis patterns for abuse, harm to others and medical emergencies (data; see
`bot.safety.patterns.blocks` for the flags)."""

from __future__ import annotations

from bot.safety.patterns.blocks import CrisisPattern, pattern, with_triggers

ABUSE, HARM_TO_OTHERS, MEDICAL = "abuse", "harm_to_others", "medical_emergency"

_RISK_PATTERNS: tuple[CrisisPattern, ...] = (
    # --- abuse (the writer is the one at risk) ---------------------------------------------------
    pattern(
        ABUSE,
        "verb_me",
        r"(?<!\bit )(?<!\bthat )(?<!\bthis )(?<!\bthis is )(?<!\bit is )(?<!\bits )(?<!\bthat is )"
        r"(?<!\bthats )(?<!\bnothing )(?<!\beverything )(?<!\bnothing really )(?<!\bcar )(?<!\bbus )"
        r"(?<!\btruck )(?<!\blorry )(?<!\bvan )(?<!\bball )(?<!\bwave )(?<!\bdoor )(?<!\btrain )"
        r"\b(?:beats|beat|beating|hits|hit|hitting|punches|punched|"
        r"punching|kicks|kicked|kicking|slaps|slapped|slapping|chokes|choked|choking|strangles|"
        r"strangled|strangling|abuses|abused|abusing|rapes|raped|raping|molests|molested|molesting|"
        r"assaults|assaulted|assaulting|touches|touching|whips|whipped|shoves|shoved) me\b(?! (?:at|in|"
        r"to|up|back|off|out|with a pillow|by|like a|like an)\b)|\b(?:is|keeps|keep|been|are|always) hurting me\b"
        r"(?! (?:emotionally|with (?:words|his words|her words))\b)",
        frame="hyperbole",
    ),
    pattern(
        ABUSE,
        "being_abused",
        r"\b(?:being|been|was|got|get|getting|im|am) (?:sexually |physically |emotionally |verbally )?"
        r"(?:abused|assaulted|molested|raped|trafficked|groomed)\b",
        subject=None,
    ),
    pattern(
        ABUSE,
        "abusive",
        r"\babusive (?:relationship|partner|husband|wife|boyfriend|girlfriend|parents?|dad|mom|mum|"
        r"father|mother|stepdad|stepmom|home|family|marriage)\b",
        subject=None,
    ),
    pattern(
        ABUSE,
        "threat",
        r"\b(?:threaten\w*|swear\w*|swore|says|said|told me|keeps saying)\b(?: (?:that|he|she|they|"
        r"hell|shell|theyll|will|would|hed|shed|to|is|was|going|gonna))* (?:kill|hurt|beat|stab|"
        r"shoot) me\b|\b(?:kill|hurt|beat|stab|shoot) me if i (?:leave|tell|go|talk|report|call)\b",
        negatable=False,
    ),
    pattern(
        ABUSE,
        "afraid_of",
        r"\b(?:afraid|scared|terrified|frightened) of (?:my )?(?:husband|wife|boyfriend|girlfriend|"
        r"partner|dad|father|mom|mum|mother|stepdad|stepfather|stepmom|stepmother|parents|uncle|"
        r"brother|ex|him|her)\b(?! (?:finding|reaction|seeing|knowing|being|hearing)\b)",
    ),
    pattern(
        ABUSE,
        "afraid_they_hurt",
        r"\b(?:afraid|scared|terrified|worried)(?: that| of what)? (?:he|she|they|hell|shell|theyll)"
        r"(?: will| is going to| might| would)? (?:hurt|hit|kill|beat|do)\b",
    ),
    pattern(
        ABUSE,
        "unsafe_home",
        r"\b(?:scared|afraid|terrified) (?:to go|of going) home\b|\b(?:not|never|dont feel) safe "
        r"(?:at home|in my (?:own )?(?:house|home|room)|around (?:him|her|them)|with (?:him|her|them))\b",
        negatable=False,
    ),
    pattern(ABUSE, "bruises", r"\bhid(?:e|ing) (?:my |the |these |all the )?bruises\b"),
    pattern(
        ABUSE,
        "controlling",
        r"\b(?:wont|doesnt|will not|does not|never) let me (?:leave|see my friends|talk to (?:anyone|"
        r"my friends|my family)|have my phone)\b",
        negatable=False,
    ),
    pattern(
        ABUSE,
        "nobody_believe",
        r"\b(?:no ?one|nobody) (?:would|will|is going to) believe me\b",
        negatable=False,
    ),
    pattern(
        ABUSE,
        "night_visits",
        r"\b(?:he|stepdad|stepfather|uncle|dad|father|brother|cousin|grandpa|man|guy|teacher|coach) "
        r"(?:comes?|came|sneaks?) (?:in|into) my (?:room|bed|bedroom)\b",
    ),
    pattern(
        ABUSE,
        "violent",
        r"\b(?:he|she|they|husband|wife|boyfriend|girlfriend|partner|dad|father|mom|mother|stepdad) "
        r"(?:gets|get|becomes|is|turns|getting) (?:violent|aggressive|physical)\b",
    ),
    # --- harm to others --------------------------------------------------------------------------
    pattern(
        HARM_TO_OTHERS,
        "intent",
        r"\b<INTENT>(?: to)?(?: (?:just|really|actually|finally|go))? (?:kill|killing|murder|"
        r"murdering|stab|stabbing|shoot|shooting|hurt|hurting|harm|harming|poison|poisoning|"
        r"strangle|strangling|attack|attacking|beat up|beating up|choke|choking|run over) "
        r"(?:<OBJ>|(?:my|his|her|their|that) (?:little |baby |big |older |younger |own |step )?<PERSON>)\b"
        r"(?! (?:feelings?|chances|career|reputation|business|pride|ego|grades?)\b)",
        subject=None,
        frame="hyperbole",
    ),
    pattern(
        HARM_TO_OTHERS,
        "thoughts",
        r"\b(?:thoughts? (?:of|about)|imagining|urges? to|dreams? about|obsessed with) (?:hurting|"
        r"harming|killing|stabbing|attacking|strangling|shooting|drowning|smothering) (?:<OBJ>|my "
        r"<PERSON>)\b",
    ),
    pattern(
        HARM_TO_OTHERS,
        "shooting",
        r"\bshoot (?:up )?(?:my |the |a )?(?:school|class|work|office|mall|church|mosque|synagogue)\b"
        r"|\bgun to (?:school|work|class)\b|\buse (?:it|the gun|the knife|a gun|a knife) on (?:them|"
        r"him|her|people|everyone)\b",
    ),
    pattern(HARM_TO_OTHERS, "make_pay", r"\bmake (?:them|him|her|everyone|you all)(?: all)? pay\b"),
    pattern(HARM_TO_OTHERS, "by_me", r"\b(?:get|gets|getting) hurt\b.{0,40}\bby me\b"),
    pattern(HARM_TO_OTHERS, "news", r"\b(?:something|what i do)\b.{0,25}\bmake the news\b"),
    pattern(
        HARM_TO_OTHERS,
        "deserve_die_act",
        r"\bdeserves? to die\b.{0,40}\b(?:ill|i will|make it happen|im going to|gonna)\b",
        subject="self",
    ),
    pattern(
        HARM_TO_OTHERS,
        "deserve_die",
        r"\b(?:they|he|she|people|everyone) (?:all )?deserves? to die\b",
        subject="self",
        level="concern",
    ),
    # --- medical emergency ------------------------------------------------------------------------
    pattern(
        MEDICAL,
        "took_pills",
        r"\b(?:took|taken|swallowed|popped|downed|ate|had|taking)\b.{0,20}\b(?:too many|bottle|"
        r"handful|box|packet|whole pack|[0-9]{2,}|twenty|thirty|forty|fifty|hundred|loads|bunch)\b"
        r".{0,25}\b(?:pills|tablets|meds|medication|medicine|paracetamol|tylenol|acetaminophen|"
        r"ibuprofen|advil|aspirin|antidepressants|painkillers|xanax|insulin|benadryl|lithium|"
        r"opioids|capsules)\b|\b(?:took|swallowed|taken) (?:all|every one) (?:of )?(?:my|the) "
        r"[a-z]+ (?:at once|together|in one go)\b",
        subject=None,
    ),
    pattern(
        MEDICAL,
        "overdose",
        r"\b(?:overdosed|overdosing|(?<!to )(?<!gonna )(?<!wanna )overdose|oded|odding)\b(?! on "
        r"(?:netflix|tv|television|youtube|tiktok|sugar|chocolate|candy|sweets|cake|carbs|pizza|anime|"
        r"memes|drama|love|cuteness|christmas|kdramas?|reality tv)\b)",
        subject=None,
        topical=True,
    ),
    pattern(
        MEDICAL,
        "cant_breathe",
        r"\b(?:cant|can not|cannot|unable to|struggling to) breathe?\b",
        negatable=False,
        frame="figurative",
        subject=None,
    ),
    pattern(
        MEDICAL,
        "chest",
        r"\bchest (?:pain|pains|hurts|is hurting|feels tight|tightness|is tight|pressure)\b",
        subject=None,
    ),
    pattern(
        MEDICAL,
        "acute",
        r"\b(?:having|have|going into|in) (?:a |an )?(?:heart attack|stroke|seizure|anaphylactic "
        r"shock|anaphylaxis|allergic reaction|asthma attack|diabetic emergency)\b",
        subject=None,
    ),
    pattern(
        MEDICAL,
        "unresponsive",
        r"\b(?:unconscious|unresponsive|not breathing|isnt breathing|stopped breathing|wont wake up|"
        r"not waking up|no pulse|turning blue)\b",
        subject="other",
        negatable=False,
    ),
    pattern(
        MEDICAL,
        "bleeding",
        r"\b(?:bleeding|blood)\b.{0,30}\b(?:wont stop|will not stop|doesnt stop|not stopping|cant "
        r"stop|everywhere|so much|a lot|really bad|so bad|heavily)\b|\b(?:lost|losing) (?:so much|a "
        r"lot of|too much) blood\b|\bcut (?:too )?deep\b",
        subject=None,
    ),
    pattern(
        MEDICAL,
        "poison",
        r"\b(?:swallowed|drank|drunk|ate|ingested|took|drinking)\b.{0,20}\b(?:bleach|poison|"
        r"poisonous|antifreeze|detergent|drain cleaner|rat poison|pesticide|weed killer|lye|tide pods?)\b",
        subject=None,
    ),
    pattern(
        MEDICAL,
        "swelling",
        r"\bthroat (?:is )?(?:closing|swelling)\b|\b(?:lips|tongue|face) (?:is |are )?(?:swelling|"
        r"swollen|turning blue)\b|\bface (?:is )?drooping\b",
        subject=None,
    ),
    pattern(
        MEDICAL,
        "pills_alcohol",
        r"\b(?:drank|drinking|drunk|alcohol|vodka|wine|beer|whiskey)\b.{0,40}\b(?:took|taking|"
        r"swallowed|popped)\b.{0,20}\b(?:pills|tablets|meds|xanax|sleeping pills)\b",
        subject=None,
    ),
)

# Substrings one of which every match of the rule contains (see `with_triggers`).
RISK_TRIGGERS: dict[str, tuple[str, ...]] = {
    "abuse/verb_me": (
        "beat",
        "hit",
        "punch",
        "kick",
        "slap",
        "chok",
        "strangl",
        "abus",
        "rap",
        "molest",
        "assault",
        "touch",
        "whip",
        "shove",
        "hurting me",
    ),
    "abuse/being_abused": ("abused", "assaulted", "molested", "raped", "trafficked", "groomed"),
    "abuse/abusive": ("abusive",),
    "abuse/threat": (" me ",),
    "abuse/afraid_of": ("afraid", "scared", "terrified", "frightened"),
    "abuse/afraid_they_hurt": ("afraid", "scared", "terrified", "worried"),
    "abuse/unsafe_home": ("home", "safe"),
    "abuse/bruises": ("bruises",),
    "abuse/controlling": ("let me",),
    "abuse/nobody_believe": ("believe me",),
    "abuse/night_visits": ("my room", "my bed"),
    "abuse/violent": ("violent", "aggressive", "physical"),
    "harm_to_others/intent": (
        "kill",
        "murder",
        "stab",
        "shoot",
        "hurt",
        "harm",
        "poison",
        "strangl",
        "attack",
        "beat",
        "chok",
        "run over",
    ),
    "harm_to_others/thoughts": (
        "hurting",
        "harming",
        "killing",
        "stabbing",
        "attacking",
        "strangling",
        "shooting",
        "drowning",
        "smothering",
    ),
    "harm_to_others/shooting": ("shoot", "gun to", "use "),
    "harm_to_others/make_pay": (" pay",),
    "harm_to_others/by_me": ("by me",),
    "harm_to_others/news": ("the news",),
    "harm_to_others/deserve_die_act": ("deserve",),
    "harm_to_others/deserve_die": ("deserve",),
    "medical_emergency/took_pills": (
        "pill",
        "tablet",
        "meds",
        "medic",
        "paracetamol",
        "tylenol",
        "acetaminophen",
        "ibuprofen",
        "advil",
        "aspirin",
        "antidepressant",
        "painkiller",
        "xanax",
        "insulin",
        "benadryl",
        "lithium",
        "opioid",
        "capsule",
        "at once",
        "together",
        "in one go",
    ),
    "medical_emergency/overdose": ("overdos", "oded", "odding"),
    "medical_emergency/cant_breathe": ("breath",),
    "medical_emergency/chest": ("chest",),
    "medical_emergency/acute": (
        "heart attack",
        "stroke",
        "seizure",
        "anaphyla",
        "allergic",
        "asthma",
        "diabetic",
    ),
    "medical_emergency/unresponsive": (
        "unconscious",
        "unresponsive",
        "breathing",
        "wake up",
        "waking up",
        "pulse",
        "turning blue",
    ),
    "medical_emergency/bleeding": ("blood", "bleeding", "cut too deep", "cut deep"),
    "medical_emergency/poison": (
        "bleach",
        "poison",
        "antifreeze",
        "detergent",
        "drain",
        "pesticide",
        "weed killer",
        "lye",
        "tide pod",
    ),
    "medical_emergency/swelling": ("throat", "swell", "swollen", "blue", "drooping"),
    "medical_emergency/pills_alcohol": ("pills", "tablets", "meds", "xanax"),
}

RISK_PATTERNS = with_triggers(_RISK_PATTERNS, RISK_TRIGGERS)
