"""What of a streamed reply may be sent (bot.engine.release) and the clean text it starts from."""

from __future__ import annotations

from bot.engine import releasable, trim_unfinished
from bot.input_text import clean_text


def test_clean_text_and_releasable():
    assert clean_text("  a\x00b\u200dc \r\n") == "abc"
    assert releasable("hello world again", 0) == len("hello world again")
    assert releasable("hello world again", 5) == len("hello world ")
    assert releasable("hello world again", 6) == len("hello ")
    assert releasable("short", 10) == 0
    assert releasable("x" * 15, 10) == 0  # no whitespace: wait for more
    assert releasable("x" * 30, 10) == 20  # a long run without spaces: cut at the limit


def test_trim_unfinished_sentence_from_the_tail():
    assert trim_unfinished("You matter. I'm here") == "You matter."
    assert trim_unfinished("You matter. I'm here.") == "You matter. I'm here."
    assert trim_unfinished('She said "stay." And then') == 'She said "stay."'
    assert trim_unfinished("no sentence end at all") == "no sentence end at all"
    assert trim_unfinished("Is it? Maybe 3.5 times") == "Is it?"
