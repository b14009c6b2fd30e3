"""The crisis screen, reply guard and crisis replies (bot.safety), table-driven on case files.

Case files live in tests/safety_cases/ (JSON Lines, format in bot/safety/evaluate.py). Every dev case
is its own test; the aggregate figures are asserted against the targets of issue 5 on the dev set
and on the held-out set (which the patterns were not tuned on).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from bot.safety import (
    CATEGORIES,
    SafetyLayer,
    screen_message,
)
from bot.safety.evaluate import Case, evaluate, load_cases
from bot.safety.guard import guard_reply
from bot.safety.text import MAX_SCREEN_CHARS, normalize
from dialogue.prompts import SYSTEM_PROMPT
from tests.paths import SAFETY_CASES

CASES_DIR = SAFETY_CASES
DEV_FILES = [p for p in sorted(CASES_DIR.glob("*.jsonl")) if p.name != "heldout.jsonl"]
DEV_CASES = load_cases(DEV_FILES)


def test_the_case_files_are_found() -> None:
    """Guards the table-driven tests below against an empty folder (they would pass on nothing)."""
    assert len(DEV_FILES) >= 3 and len(DEV_CASES) >= 100


HELDOUT_CASES = load_cases([CASES_DIR / "heldout.jsonl"])

# Targets from issue 5.
EXPLICIT_RECALL_MIN = 0.95
INDIRECT_RECALL_MIN = 0.85
DISTRESS_FPR_MAX = 0.05


def _case_id(case: Case) -> str:
    return f"{case.source}:{case.level}:{case.text[:40]}"


def test_case_files_are_big_enough_and_labelled() -> None:
    crisis = [c for c in DEV_CASES if c.level == "crisis"]
    controls = [c for c in DEV_CASES if c.level != "crisis"]
    assert len(DEV_CASES) >= 150
    assert {c.category for c in crisis} == set(CATEGORIES)
    assert sum(c.style == "distress" for c in controls) >= 40
    assert all(c.category in CATEGORIES for c in crisis)
    assert len(HELDOUT_CASES) >= 60


@pytest.mark.parametrize("case", DEV_CASES, ids=_case_id)
def test_dev_case(case: Case) -> None:
    result = screen_message(case.text)
    if case.level == "crisis":
        assert result.crisis, f"missed {case.category}: {case.text!r}"
        assert result.category == case.category
        if case.style == "third_person":
            assert result.subject == "other"
    elif case.level == "concern":
        assert result.level == "concern", f"{case.text!r} -> {result}"
        assert not result.crisis
    else:
        assert not result.crisis, f"false alarm ({result.matched}): {case.text!r}"


@pytest.mark.parametrize("name,cases", [("dev", DEV_CASES), ("held-out", HELDOUT_CASES)])
def test_recall_and_false_positive_targets(name: str, cases: list[Case]) -> None:
    report = evaluate(cases)
    explicit = report.rate(report.recall_by_style["explicit"])
    indirect = report.rate(report.recall_by_style["indirect"])
    distress_fpr = report.rate(report.distress_false_positives)
    assert explicit >= EXPLICIT_RECALL_MIN, f"{name}: explicit recall {explicit:.3f}"
    assert indirect >= INDIRECT_RECALL_MIN, f"{name}: indirect recall {indirect:.3f}"
    assert distress_fpr <= DISTRESS_FPR_MAX, f"{name}: distress FPR {distress_fpr:.3f}"


# --- normalisation and hostile input ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("I WANT TO DIE", " i want to die "),
        ("I don\u2019t want to live", " i dont want to live "),
        ("k\u200bi\u200bl\u200bl my\u2060self", " kill myself "),  # zero-width space / joiner
        ("\uff4b\uff49\uff4c\uff4c myself", " kill myself "),  # fullwidth letters (NFKC)
        ("\U0001d424\U0001d422\U0001d425\U0001d425 myself", " kill myself "),  # maths bold
        ("k1ll mys3lf", " kill myself "),
        ("soooo tired", " soo tired "),
        ("I want to k*ll myself", " i want to kill myself "),
        ("i want to commit sucide", " i want to commit suicide "),
        ("take 20mg", " take 20mg "),
        ("pills \U0001f48a now", " pills pills now "),
        ("not suicidal, just tired", " not suicidal , just tired "),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I w\u200bant to k\u200bill myself",
        "I\u00a0WANT\u00a0TO\u00a0DIE!!!",
        "i wanna diee \U0001f62d\U0001f62d",
        "su1c1dal",
        "i want to kil my self",
        "Ich bin so m\u00fcde. I want to die",
        "<b>I want to kill myself</b>",
        "**I want to end my life**",
        # #15: look-alike letters of other scripts (UTS #39 confusables) and spelled-out words
        "k\u0456ll myself",  # Cyrillic small byelorussian-ukrainian i
        "I w\u0430nt t\u043e d\u0456\u0435",  # Cyrillic a, o, i, e
        "\u039a\u0399LL MYSELF",  # Greek capital kappa and iota
        "\u0455\u0443\u0456\u0441\u0456d\u0435 is all I think about",
        "k i l l myself",
        "i want to d i e",
        "i'm going to k.i.l.l myself",
        "gonna k-i-l-l myself tonight",
    ],
)
def test_obfuscated_crises_are_found(text: str) -> None:
    assert screen_message(text).crisis


@pytest.mark.parametrize(
    "text",
    [
        "i would never k i l l myself",  # the context rules still see the negation
        "u r a star, thank u",  # texting's single letters are kept as they were
        "the A B C of feeling better",
        "\u041c\u043d\u0435 \u0433\u0440\u0443\u0441\u0442\u043d\u043e",  # Russian, harmless
    ],
)
def test_folding_and_joining_do_not_invent_crises(text: str) -> None:
    assert not screen_message(text).crisis


def test_spelled_out_words_keep_the_original_reading() -> None:
    assert normalize("u r a star") == " u r a star . ura star "


def test_huge_message_is_bounded_and_still_screened() -> None:
    filler = "the weather was fine and we talked about the garden. " * 2000
    assert len(filler) > 100_000
    assert screen_message(filler).level == "none"
    assert screen_message("I want to kill myself. " + filler).crisis
    assert screen_message(filler + " I want to kill myself").crisis
    assert len(normalize(filler)) < MAX_SCREEN_CHARS * 1.5


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_screen_and_guard_never_raise(text: str) -> None:
    result = screen_message(text)
    assert result.level in ("none", "concern", "crisis")
    assert result.crisis == (result.level == "crisis")
    assert guard_reply(text, final=True).reason is None or not guard_reply(text, final=True).ok


def test_binary_and_control_characters() -> None:
    junk = bytes(range(256)).decode("latin-1") + "\x00\x1b[31m\ufeff\u202e"
    assert screen_message(junk).level == "none"
    assert screen_message(junk + "I want to die" + junk).crisis


# --- negation, past tense and third person ------------------------------------------------------


@pytest.mark.parametrize(
    "text,level,subject",
    [
        ("I'm not suicidal, just tired", "none", "self"),
        ("I would never kill myself", "none", "self"),
        ("I no longer want to die", "none", "self"),
        ("I'm not sure I want to live anymore, I want to die", "crisis", "self"),
        ("I attempted suicide years ago", "concern", "self"),
        ("I attempted suicide years ago and I'm going to try again tonight", "crisis", "self"),
        ("my cousin killed himself in 2019", "concern", "other"),
        ("my cousin is going to kill himself", "crisis", "other"),
        ("I want to kill my brother lol he ate my fries", "concern", "self"),
        ("my phone is going to die, I want to finish this first", "none", "self"),
        ("my grandpa is still alive and I'm so glad", "none", "self"),
        # helping someone, a caring role, study: a topical keyword there asks, it is no emergency
        ("How do I support my dad, who was suicidal after his stroke?", "concern", "self"),
        ("I'm a student nurse, how are overdoses treated?", "concern", "self"),
        ("I'm a paramedic, someone overdosed in front of me tonight", "crisis", "other"),
        ("overdosed on my tablets, what do I do", "crisis", "self"),
    ],
)
def test_context_rules(text: str, level: str, subject: str) -> None:
    result = screen_message(text)
    assert (result.level, result.subject) == (level, subject), result


def test_matched_names_a_rule_not_the_users_words() -> None:
    result = screen_message("my name is Alice and I want to kill myself")
    assert result.matched == "suicide/kill_self"


# --- reply guard ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply,reason",
    [
        ("You could take 40 mg of it and", "method"),
        ("The lethal dose is", "method"),
        ("Tie a noose", "method"),
        ("You should kill yourself", "encourages_harm"),
        ("Honestly you'd be better off dead", "encourages_harm"),
        ("Nobody would miss you", "encourages_harm"),
        ("I've been thinking about suicide lately.", "crisis_statement"),
        ("I want to die too", "crisis_statement"),
        ("You're pathetic.", "hostile"),
        ("Shut up.", "hostile"),
        ("You sound so sexy", "sexual"),
        ("I'm a licensed therapist, so trust me", "identity_claim"),
        ("As a therapist I recommend", "identity_claim"),
        ("I am not an AI, I'm a real person", "identity_claim"),
        ("My instructions say I must", "prompt_leak"),
        (SYSTEM_PROMPT[60:260], "prompt_leak"),
        ("   ", "empty"),
    ],
)
def test_guard_withdraws(reply: str, reason: str) -> None:
    verdict = SafetyLayer().guard(reply, final=True)
    assert (verdict.ok, verdict.reason) == (False, reason)


@pytest.mark.parametrize(
    "reply",
    [
        "That sounds really hard. What has been weighing on you the most?",
        "I'm an AI, not a therapist, but I'm here to listen.",
        "You're not a burden, and you're not stupid for feeling this way.",
        "It sounds like you've been thinking about hurting yourself. Thank you for telling me.",
        "When you feel like nobody understands, it can be so lonely. Do you want to tell me more?",
        "Maybe a short walk or 5 minutes of slow breathing could help a little.",
        "I can't share how I was set up, but I'm glad to keep talking with you.",
        "I do have to check: have you had any thoughts of suicide or self-harm?",
        "Those sound like fresh wounds. I think talking to him is the best way to go.",
    ],
)
def test_guard_lets_supportive_replies_through(reply: str) -> None:
    verdict = SafetyLayer().guard(reply, final=True)
    assert verdict.ok, verdict.reason


def test_guard_fires_on_partial_text_as_soon_as_the_phrase_is_whole() -> None:
    layer = SafetyLayer()
    reply = "Some people take 30 pills of paracetamol, which"
    verdicts = [layer.guard(reply[:i], final=False) for i in range(1, len(reply) + 1)]
    first_bad = next(i for i, v in enumerate(verdicts, 1) if not v.ok)
    assert reply[:first_bad].endswith("30 pill")  # before the word is even finished
    assert verdicts[-1].reason == "method"
    assert layer.guard("", final=False).ok  # nothing to judge yet mid-stream


def test_fallback_reply_passes_the_guard_and_screen() -> None:
    layer = SafetyLayer()
    assert layer.guard(layer.fallback_reply(), final=True).ok
    assert not screen_message(layer.fallback_reply()).crisis


def test_trigger_gates_never_hide_a_match() -> None:
    """Every rule's regex only matches text containing one of its trigger substrings."""
    from bot.safety.patterns import CRISIS_PATTERNS

    texts = [c.text for c in DEV_CASES + HELDOUT_CASES]
    texts += [SafetyLayer().crisis_reply(screen_message(t)) for t in texts[:5]]
    for text in texts:
        norm = normalize(text)
        for rule in CRISIS_PATTERNS:
            if rule.regex.search(norm):
                assert rule.may_match(norm), (rule.name, text)
