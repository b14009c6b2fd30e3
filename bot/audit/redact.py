"""Redaction for the audit store: URLs, emails, @handles and phone-like numbers are replaced
before any text is copied for moderators (or leaves the machine for a remote scorer or judge)."""

from __future__ import annotations

import re

COMMON_TLDS = (
    "com|org|net|edu|gov|io|co|uk|de|fr|es|it|nl|ru|ca|au|in|jp|cn|br|info|biz|me|app|dev|ly|"
    "gg|tv|xyz|online|site|link|to|us|eu|ch|se|no|fi|dk|pl|be|at|nz|ie|za|mx|ar|tk|ai"
)
REDACTIONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("[url]", re.compile(r"\b(?:https?|ftp|tg|discord)://\S+|\bwww\.\S+", re.IGNORECASE)),
    ("[email]", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)),
    (
        "[url]",
        re.compile(
            rf"\b(?:[a-z0-9-]+\.)+(?:{COMMON_TLDS})\b(?:/\S*)?|\b(?:[a-z0-9-]+\.)+[a-z]{{2,24}}/\S*",
            re.IGNORECASE,
        ),
    ),
    ("[handle]", re.compile(r"(?<![\w@])@[A-Za-z0-9_]{3,32}\b")),
    # Any run of 7+ digits with common separators: phone numbers, but also platform ids and
    # card numbers. Over-redacting a date or an amount is the safe mistake.
    ("[number]", re.compile(r"(?<![\w])\+?\d(?:[\s().-]{0,2}\d){6,}")),
)


def redact(text: str) -> tuple[str, int]:
    """`text` with URLs, emails, @handles and phone-like numbers replaced; (text, replacements)."""
    count = 0
    for token, pattern in REDACTIONS:
        text, n = pattern.subn(token, text)
        count += n
    return text, count
