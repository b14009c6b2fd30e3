"""Crisis patterns for suicide and self-harm (data; see `bot.safety.patterns.blocks` for the flags).

Patterns match the normalised text of `bot.safety.text.normalize`: lower case, no apostrophes
("dont", "im", "shes"), single spaces, clause breaks as " . " / " , " tokens.
"""

from __future__ import annotations

from bot.safety.patterns.blocks import CrisisPattern, pattern, with_triggers

SUICIDE, SELF_HARM = "suicide", "self_harm"

SUICIDE_PATTERNS: tuple[CrisisPattern, ...] = (
    # --- suicide: explicit -------------------------------------------------------------------
    pattern(SUICIDE, "kill_self", r"\bk(?:i|y)?l+(?:ing|s)? ?<SELF>\b"),
    pattern(SUICIDE, "kms", r"\bkms\b"),
    pattern(SUICIDE, "end_life", r"\b(?:end|ending|take|taking) (?:my|mah) (?:own )?life\b"),
    pattern(SUICIDE, "keyword", r"\bsuicid(?:e|al|ally)\b", subject=None, topical=True),
    pattern(SUICIDE, "unalive", r"\bunalive\b", subject=None),
    pattern(
        SUICIDE,
        "want_die",
        r"(?<!thought i was )(?<!thought we were )(?<!felt like i was )"
        r"\b(?:want|wanna|wants|wish|ready|going|gonna|deserve|deserves|plan|planning|praying|"
        r"hope)(?: to)?(?: just)? (?:die+|be dead)\b(?! (?:of|for|laughing|happy|trying)\b)",
        subject=None,
    ),
    pattern(
        SUICIDE,
        "wish_dead",
        r"\bwish (?:i|id) (?:could |would )?(?:just )?(?:die+|be dead|was dead|were dead)\b",
    ),
    pattern(SUICIDE, "better_dead", r"\b(?:better off|rather be|better) dead\b", subject=None),
    pattern(
        SUICIDE,
        "end_it",
        r"\b(?:want|wanna|going|gonna|ready|decided|plan|planning|thinking about|thinking of|"
        r"think about|how|time|will|ill) (?:to )?(?:just )?(?:end|ending) (?:it all|it|things|"
        r"everything|my suffering)\b(?! with\b)(?! between\b)",
    ),
    pattern(SUICIDE, "end_it_all", r"\bend it all\b"),
    pattern(
        SUICIDE, "note", r"\b(?:suicide (?:note|letter|plan)|goodbye (?:note|letter|letters))\b"
    ),
    pattern(SUICIDE, "hang", r"\bhang(?:ing)? <SELF>\b"),
    pattern(SUICIDE, "noose", r"\bnoose\b", topical=True),
    pattern(
        SUICIDE,
        "passive_wish",
        r"\b(?:wouldnt|would not|dont think id|wouldnt really|wouldnt even) (?:mind|care)(?: \w+)? "
        r"if (?:a|the) (?:bus|car|truck|lorry|train|van) (?:hit|hits|killed|ran over) me\b|"
        r"\b(?:hope|wish|hoping|wishing) (?:a|the|that a|that the) (?:bus|car|truck|lorry|train|van) "
        r"(?:would )?(?:hits?|kills?|runs? over) me\b",
        negatable=False,
        level="concern",
    ),
    pattern(
        SUICIDE,
        "jump",
        r"\b(?:going to|gonna|want to|wanna|will|about to|ready to|thinking about|plan to|"
        r"planning to) jump (?:off|from|in front of)\b"
        r"|\b(?:roof|ledge|bridge|edge|balcony|cliff)\b.{0,40}\b(?:going to|gonna|about to|"
        r"ready to|will) jump\b",
    ),
    pattern(
        SUICIDE,
        "overdose_intent",
        r"\b(?:going to|gonna|want to|wanna|will|plan to|planning to|about to|thinking about|"
        r"thinking of) (?:overdose|od|take all (?:my|the) (?:pills|meds|tablets))\b",
    ),
    # --- suicide: indirect -------------------------------------------------------------------
    pattern(
        SUICIDE,
        "not_live",
        r"\b(?:dont|do not|no longer|dont really|dont even) (?:want|wanna|wish) (?:to )?(?:be here|"
        r"live|be alive|exist|wake up|go on|keep going|keep living|be around)\b(?! (?:in|with|at|"
        r"near|there|here|together|alone|like that|without|forever|on|through|tablets|meds|"
        r"medication|antidepressants|pills|holiday|a date|dates|the trip)\b)",
        negatable=False,
    ),
    pattern(
        SUICIDE,
        "whats_the_point",
        r"\b(?:whats|what is|wheres) the point (?:of|in) (?:living|life|waking up|being alive|"
        r"going on|existing|me|even living)\b|\bno point (?:in )?(?:living|being alive|going on|"
        r"waking up)\b",
    ),
    pattern(
        SUICIDE,
        "better_without_me",
        r"\b(?:everyone|everybody|world|family|people|they|theyd|you all|you guys|all)\b(?: [a-z]+)"
        r"{0,3} (?:better off|happier|easier|better) without me\b|\b(?:better|happier|easier) (?:off )?"
        r"if i (?:just )?(?:was gone|were gone|wasnt here|werent here|wasnt around|died|"
        r"disappeared|didnt exist|was dead|were dead)\b",
        negatable=False,
    ),
    pattern(
        SUICIDE,
        "nobody_would_care",
        r"\b(?:no ?one|nobody|noone)(?: would| will| even)* (?:care|notice|miss me|cry|be sad)\b"
        r".{0,30}\b(?:if|when) i (?:[a-z]+ ){0,2}?(?:die|died|dead|gone|disappeared|wasnt here|"
        r"werent here)\b",
        negatable=False,
    ),
    pattern(
        SUICIDE,
        "never_born",
        r"\bwish (?:i|id) (?:was|were|had) never (?:been )?born\b",
        negatable=False,
    ),
    pattern(
        SUICIDE,
        "never_wake",
        r"\b(?:sleep|asleep|go to bed|close my eyes)\b.{0,30}\b(?:never|not|wont) (?:wake|waking) "
        r"up\b|\bnever wake up again\b",
        negatable=False,
    ),
    pattern(
        SUICIDE,
        "no_reason",
        r"\bno (?:reason|point|will) (?:for me )?(?:to|in) (?:keep going|go on|going on|live|living|"
        r"keep living|be alive|being alive|continue|stay alive|carry on)\b"
        r"|\b(?:dont|do not|cant|cannot) (?:see|find|think of) (?:a |any )?(?:reason|point) (?:to|in|"
        r"for) (?:keep going|go on|live|living|keep living|being alive|staying alive|carry on)\b",
        negatable=False,
    ),
    pattern(
        SUICIDE,
        "nothing_to_live_for",
        r"\bnothing (?:left )?(?:to live for|worth living for)\b|\b(?:life|living|my life|existence) "
        r"(?:isnt|is not|aint|not) worth (?:living|it)\b",
        negatable=False,
    ),
    pattern(
        SUICIDE,
        "disappear",
        r"\b(?:disappear|disappeared|vanish|be gone)(?: forever| for good| permanently)\b"
        r"|\b(?:stop|quit|cease) (?:existing|to exist|being alive)\b",
        subject=None,
    ),
    pattern(
        SUICIDE,
        "tired_of_living",
        r"\b(?:tired|sick|exhausted) of (?:existing|being alive|living)\b",
    ),
    pattern(
        SUICIDE,
        "goodbye",
        r"\bthis is (?:my )?goodbye\b|\bsaying (?:my )?(?:goodbyes|goodbye to (?:everyone|everybody|"
        r"you all|the world))\b|\bgoodbye (?:forever|everyone|world|cruel world)\b",
        frame="departure",
    ),
    pattern(
        SUICIDE,
        "not_around_long",
        r"\b(?:wont|will not|not going to|am not going to) be (?:around|here|alive|a problem|a "
        r"burden|bothering (?:anyone|you))\b.{0,30}?\b(?:long|longer|anymore|soon|tomorrow)\b"
        r"|\b(?:dont|do not) think (?:ill|i will|id) be (?:around|here|alive)\b"
        r"|\bwont (?:have to )?(?:deal with|worry about|put up with|see|look after) me\b",
        negatable=False,
    ),
    pattern(
        SUICIDE,
        "done_with_life",
        r"\b(?:done|finished|through) with (?:life|living|being alive|this life)\b"
        r"|\bgiv(?:e|ing) up on (?:life|living)\b",
    ),
    pattern(
        SUICIDE,
        "giving_away",
        r"\b(?:giving|gave|give) away (?:all )?(?:of )?my (?:stuff|things|belongings|possessions)\b",
    ),
    pattern(
        SUICIDE,
        "want_it_to_stop",
        r"\bwant (?:it all|everything|the pain|this|it|life) to (?:stop|end) (?:for good|forever|permanently)\b",
    ),
    pattern(
        SUICIDE,
        "be_over",
        r"\bwant (?:it|this|everything|it all|life|my life) to be over (?:for good|forever|"
        r"permanently)\b|\bwant (?:it all|my life) to be over\b",
    ),
    pattern(
        SUICIDE,
        "only_way_out",
        r"\bonly way out\b(?! is through)|\bno way out (?:but|except|other than)\b",
    ),
    pattern(SUICIDE, "gun_emoji", r"\bgun me\b"),
    # --- suicide: someone else -----------------------------------------------------------------
    pattern(
        SUICIDE,
        "kill_other_self",
        r"\bk(?:i)?l+(?:ing|s|ed)? <OTHERSELF>\b",
        subject="other",
        frame="fiction",
    ),
    pattern(
        SUICIDE,
        "end_other_life",
        r"\b(?:end|ending|ended|take|taking|took) (?:his|her|their) (?:own )?li(?:fe|ves)\b",
        subject="other",
    ),
)

SELF_HARM_PATTERNS: tuple[CrisisPattern, ...] = (
    # --- self-harm -----------------------------------------------------------------------------
    pattern(
        SELF_HARM,
        "harm_self",
        r"\b(?:cut|cutting|cuttin|cuts|burn|burned|burnt|burning|hurt|hurting|hurts|harm|harming|"
        r"harmed|scratch|scratching|scratched|hit|hitting|punish|punishing|punished|starve|"
        r"starving|starved|mutilate|mutilating|carve|carving|stab|stabbing) <SELF>\b(?! out\b)",
        frame="accident",
    ),
    pattern(
        SELF_HARM,
        "keyword",
        r"\bself ?(?:harm|harming|harmed|injury|injuring|injure|mutilation|mutilate|mutilating)\b",
        subject=None,
        topical=True,
    ),
    pattern(
        SELF_HARM,
        "other",
        r"\b(?:cut|cutting|cuts|hurt|hurting|hurts|harm|harming|harms|burn|burning|starve|starving) <OTHERSELF>\b",
        subject="other",
        frame="accident",
    ),
    pattern(
        SELF_HARM,
        "cutting_again",
        r"\b(?:been|started|start|keep|kept|still|back to|stop|quit) (?:cutting|cuttin)\b(?! (?:back|"
        r"down|out|off|class|school|the|my hair|carbs|sugar|corners|costs|ties|onions|wood|paper|"
        r"grass|hair)\b)|(?<!were )(?<!was )(?<!got )(?<!been )(?<!be )\b(?:cut|cutting|cuttin) again\b|\brelaps\w*\b.{0,30}\b(?:cut|cutting|"
        r"self ?harm|harming|sh)\b",
        subject=None,
    ),
    pattern(
        SELF_HARM,
        "want_cut",
        r"\b(?:want|wanna|need|urge|urges|craving|crave|tempted) (?:to )?(?:cut|burn)\b(?! (?:my|the|"
        r"a|an|some|it|them|him|her|you|his|their|your|our|class|school|back|down|off|out|ties|up|"
        r"through|costs|corners|carbs|sugar|people|someone|anyone|everyone|this|that|onions?|into|in|"
        r"to|on|for|with|across|short|loose|free|calories|fat)\b)",
    ),
    pattern(
        SELF_HARM,
        "body",
        r"\b(?:cut|cutting|cuttin|slit|slitting|slash|slashing|burn|burning|carve|carving|scratch|"
        r"scratching) (?:my|mah) (?:wrists?|arms?|thighs?|legs?|skin|veins?|stomach|hips?)\b",
        frame="accident",
    ),
    pattern(SELF_HARM, "fresh_cuts", r"\b(?:fresh|new|deep) (?:cuts|scars|burns)\b(?! of\b)"),
    pattern(
        SELF_HARM,
        "hiding",
        r"\bhid(?:e|ing|den) (?:my |the )?(?:scars|cuts|wounds|wrists|burns)\b"
        r"|\b(?:long sleeves|sleeves|bracelets)\b.{0,40}\b(?:scars|cuts|marks)\b",
    ),
    pattern(
        SELF_HARM,
        "deserve_pain",
        r"\bdeserve (?:to )?(?:bleed|the pain|pain|to hurt|to suffer|to be hurt|to be punished)\b",
    ),
    pattern(
        SELF_HARM,
        "feel_pain",
        r"\b(?:need|have) to (?:feel|see) (?:the )?(?:pain|blood)\b|\bpain (?:to|so i can) feel (?:something|alive|real)\b",
    ),
    pattern(
        SELF_HARM,
        "blade",
        r"\b(?:blade|blades|razor|razors)\b.{0,40}\b(?:calls?|calling|only thing|feel something|relief|urges?)\b",
    ),
    pattern(
        SELF_HARM,
        "coping",
        r"\b(?:cutting|self ?harm|hurting myself|burning myself|the pain)\b.{0,30}\b(?:only way|"
        r"only thing|how) (?:i|that helps me) (?:cope|deal|feel|get through)\b",
    ),
    pattern(SELF_HARM, "punish_body", r"\bpunish(?:ing)? my (?:body|self)\b"),
    pattern(
        SELF_HARM,
        "until_bleed",
        r"\b(?:until|till|til) (?:they|it|i|my [a-z]+) (?:bleed|bleeds|bled)\b",
    ),
)

# Substrings one of which every match of the rule contains (see `with_triggers`).
TRIGGERS: dict[str, tuple[str, ...]] = {
    "suicide/kill_self": ("sel", "sef"),
    "suicide/kms": ("kms",),
    "suicide/end_life": ("life",),
    "suicide/keyword": ("suicid",),
    "suicide/unalive": ("unalive",),
    "suicide/want_die": ("die", "dead"),
    "suicide/wish_dead": ("die", "dead"),
    "suicide/better_dead": ("dead",),
    "suicide/end_it": ("end",),
    "suicide/end_it_all": ("end it all",),
    "suicide/note": ("note", "letter", "plan"),
    "suicide/hang": ("hang",),
    "suicide/noose": ("noose",),
    "suicide/jump": ("jump",),
    "suicide/overdose_intent": ("overdose", " od ", "take all"),
    "suicide/not_live": (
        "be here",
        "live",
        "alive",
        "exist",
        "wake up",
        "go on",
        "keep going",
        "be around",
    ),
    "suicide/whats_the_point": ("point",),
    "suicide/better_without_me": ("without me", "if i"),
    "suicide/nobody_would_care": ("no one", "noone", "nobody"),
    "suicide/never_born": ("born",),
    "suicide/never_wake": ("wake", "waking"),
    "suicide/no_reason": ("reason", "point", "no will"),
    "suicide/nothing_to_live_for": ("worth", "live for"),
    "suicide/disappear": ("disappear", "vanish", "gone", "exist", "being alive"),
    "suicide/tired_of_living": ("existing", "alive", "living"),
    "suicide/goodbye": ("goodbye",),
    "suicide/passive_wish": ("bus", "car", "truck", "lorry", "train", "van"),
    "suicide/not_around_long": ("wont", "will not", "not going to", "dont think", "do not think"),
    "suicide/done_with_life": ("life", "living", "alive"),
    "suicide/giving_away": ("away",),
    "suicide/want_it_to_stop": ("for good", "forever", "permanently"),
    "suicide/be_over": ("over",),
    "suicide/only_way_out": ("way out",),
    "suicide/gun_emoji": ("gun me",),
    "suicide/kill_other_self": ("sel",),
    "suicide/end_other_life": ("life", "lives"),
    "self_harm/harm_self": ("sel", "sef"),
    "self_harm/keyword": ("self",),
    "self_harm/other": ("sel",),
    "self_harm/cutting_again": ("cut", "relaps"),
    "self_harm/want_cut": ("cut", "burn"),
    "self_harm/body": ("cut", "slit", "slash", "burn", "carv", "scratch"),
    "self_harm/fresh_cuts": ("cuts", "scars", "wounds", "burns"),
    "self_harm/hiding": ("scars", "cuts", "wounds", "wrists", "burns", "marks"),
    "self_harm/deserve_pain": ("deserve",),
    "self_harm/feel_pain": ("pain", "blood"),
    "self_harm/blade": ("blade", "razor"),
    "self_harm/coping": ("cutting", "harm", "hurting myself", "burning myself", "the pain"),
    "self_harm/punish_body": ("punish",),
    "self_harm/until_bleed": ("bleed", "bled"),
}

SUICIDE_SELF_HARM_PATTERNS: tuple[CrisisPattern, ...] = with_triggers(
    SUICIDE_PATTERNS + SELF_HARM_PATTERNS, TRIGGERS
)
"""The suicide and self-harm rules with their trigger words (see `with_triggers`)."""
