"""What the engine accepts as a person's text: cleaned of what no reader can see, and bounded.

`clean_text` runs on every incoming message before it is screened, stored or shown to a model:

- NFC, and newlines normalised to "\n";
- control characters, lone surrogates and private-use characters dropped (newline and tab kept);
- every *format* character (Unicode category Cf) dropped: bidirectional embeddings, overrides,
  isolates and marks (which can make stored or echoed text read differently from its bytes),
  zero-width space / non-joiner / joiner, word joiner, BOM, invisible operators, soft hyphen,
  tag characters - except where they are part of what the person wrote:
  a zero-width joiner inside an emoji sequence (👩‍👩‍👧, 🏳️‍🌈), tag characters inside a
  subdivision flag (🏴 + tags), and a zero-width non-joiner between letters of the scripts that
  need it (Persian, Indic);
- blank-looking letters (Hangul fillers, the braille blank) become spaces, so a message of only
  invisible characters is empty, as it looks.

`truncate_for_storage` keeps an over-long message's head with a visible marker.
"""

from __future__ import annotations

import unicodedata

import regex

ZWJ = "\u200d"
ZWNJ = "\u200c"
BLACK_FLAG = "\U0001f3f4"
TAG_FIRST, TAG_LAST = "\U000e0020", "\U000e007f"
VARIATION_SELECTOR_16 = "\ufe0f"
SKIN_TONES = frozenset(chr(c) for c in range(0x1F3FB, 0x1F400))
BLANK_LOOKALIKES = "\u115f\u1160\u3164\uffa0\u2800"
_INVISIBLE_RE = regex.compile(rf"[\p{{Cc}}\p{{Cs}}\p{{Co}}\p{{Cf}}{BLANK_LOOKALIKES}]")
_ASCII_CONTROL_RE = regex.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
TRUNCATION_MARKER = "\n[… {omitted:,} more characters were not kept: the message was too long]"


def _is_emoji(ch: str) -> bool:
    """Pictographs (So), keycaps' VS16 and skin-tone modifiers count as emoji parts here."""
    return ch == VARIATION_SELECTOR_16 or ch in SKIN_TONES or unicodedata.category(ch) == "So"


def _is_script_letter(ch: str) -> bool:
    return not ch.isascii() and unicodedata.category(ch) in ("Lo", "Mn", "Mc")


def _keep_format_char(text: str, i: int) -> bool:
    """Whether the format character at `text[i]` belongs to an emoji, flag or script."""
    ch = text[i]
    before = text[i - 1] if i > 0 else ""
    after = text[i + 1] if i + 1 < len(text) else ""
    if ch == ZWJ:
        return bool(before and after) and _is_emoji(before) and _is_emoji(after)
    if TAG_FIRST <= ch <= TAG_LAST:
        return before == BLACK_FLAG or TAG_FIRST <= before <= TAG_LAST
    if ch == ZWNJ:
        return bool(before and after) and _is_script_letter(before) and _is_script_letter(after)
    return False


def _replace(match: regex.Match[str]) -> str:
    ch, i = match.group(0), match.start()
    if ch in "\n\t":
        return ch
    if ch in BLANK_LOOKALIKES:
        return " "
    if unicodedata.category(ch) == "Cf" and _keep_format_char(match.string, i):
        return ch
    return ""


def clean_text(text: str) -> str:
    """The person's text as the engine handles it (see the module docstring); stripped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii():  # the common case: only ASCII controls can need removing
        return _ASCII_CONTROL_RE.sub("", text).strip()
    text = unicodedata.normalize("NFC", text)
    return _INVISIBLE_RE.sub(_replace, text).strip()


def truncate_for_storage(text: str, max_chars: int) -> str:
    """`text` if it fits, else its first `max_chars` characters and a marker saying how many
    were not kept (a surrogate pair or combining sequence is never split)."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    while head and unicodedata.combining(head[-1]):
        head = head[:-1]
    return head + TRUNCATION_MARKER.format(omitted=len(text) - len(head))
