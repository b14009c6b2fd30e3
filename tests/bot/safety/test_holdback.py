"""Where a streamed reply is held back (bot.safety.holdback): from the start of what a guard rule
could still be matching, and the unfinished last word; everything else goes out."""

from __future__ import annotations

from bot.safety.guard import PromptLeakDetector, guard_reply
from bot.safety.holdback import LONG_RUN_CHARS, hold_from
from bot.safety.text import MAX_SCREEN_CHARS
from dialogue.prompts import SYSTEM_PROMPT

LEAK = PromptLeakDetector(SYSTEM_PROMPT)


def sendable(text: str, leak: PromptLeakDetector | None = None) -> str:
    assert guard_reply(text, final=False, leak=LEAK).ok  # the release sees only passed text
    return text[: hold_from(text, 0, leak)]


def test_an_ordinary_reply_goes_out_but_for_its_unfinished_last_word() -> None:
    assert sendable("That sounds really hard. Tell me more about your wee") == (
        "That sounds really hard. Tell me more about your "
    )
    # "been" could start "been cutting again": held until the next word says otherwise
    assert sendable("What has been ") == "What has "
    assert sendable("What has been going on ") == "What has been going on "
    assert sendable("Hello") == ""
    assert sendable("Hello friend ") == "Hello friend "
    assert sendable("Hello there ") == "Hello "  # "there is a real person" is a claim
    # with the prompt-leak check, the last word too when it is one of the prompt's words
    assert sendable("That sounds really hard. What has been weig", LEAK) == (
        "That sounds really hard. What has "
    )


def test_a_phrase_that_could_still_become_harmful_is_held_from_its_start() -> None:
    assert sendable("Maybe you could take 30 ") == "Maybe you could take "
    assert sendable("Honestly, you should kill ") == "Honestly, "
    assert sendable("It might help to know there is a lethal ") == (
        "It might help to know there is a "
    )
    # a claim: the lead-in, adverbs and content words are held until the claim is decided
    held = sendable("Thank you for sharing. I am also actually really a fully licensed ")
    assert held == "Thank you for sharing. "
    # decided harmless: goes out
    assert sendable("I am also actually really glad you wrote, and ") == (
        "I am also actually really glad you wrote, and "
    )


def test_a_negated_complete_match_holds_nothing() -> None:
    assert sendable("You're not stupid for feeling this way, and ") == (
        "You're not stupid for feeling this way, and "
    )


def test_a_first_person_crisis_phrase_below_crisis_level_is_held_to_the_end() -> None:
    text = "I hear you. I tried to kill myself years ago, and it was hard. "
    assert not guard_reply(text + "It happened again last night.", final=False).ok
    # held from the phrase's start: it could still turn crisis with a recent time word later
    assert sendable(text) == "I hear you. I tried to "


def test_prompt_words_are_held_while_they_could_become_a_leak() -> None:
    words = SYSTEM_PROMPT.split()
    run = " ".join(words[10:14])  # four words in the prompt's order
    assert sendable(f"Well, {run} ", LEAK) == "Well, "
    assert sendable(f"Well, {run} bananas ", LEAK) == f"Well, {run} bananas "


def test_never_less_than_what_was_sent_and_long_runs_without_spaces() -> None:
    text = "Hello there friend "
    assert hold_from(text, len(text), LEAK) == len(text)
    chinese = "我" * 100
    assert hold_from(chinese, 0, LEAK) == 100 - LONG_RUN_CHARS
    huge = "word " * (MAX_SCREEN_CHARS // 5 + 10)
    assert hold_from(huge, 7, LEAK) == 7  # beyond the screened window: held to the end


def test_letters_spelled_out_are_held_from_the_first_letter() -> None:
    for text in ("Thanks, k i l l yourself now ", "Thanks, k.i.l.l it now ", "Thanks, k i "):
        assert "k" not in sendable(text)  # "k i " may still go on "l l"
    assert sendable("Thank you so much a b ") == "Thank you so much "
    assert sendable("Thank you so much a b c d now ") == "Thank you so much "  # to the end
