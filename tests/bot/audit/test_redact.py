"""Redaction before anything is copied for moderators (bot.audit.redact)."""

from __future__ import annotations

import pytest

from bot.audit.redact import redact
from tests.bot.audit.audit_data import (
    PLATFORM_ID,
)

# --- redaction and sampling (pure) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+x@example.co.uk today", "write to [email] today"),
        ("call +44 20 7946 0958 or 555-123-4567", "call [number] or [number]"),
        ("see https://x.example.com/a?b=1 and www.foo.org", "see [url] and [url]"),
        ("reddit.com/r/help and example.io", "[url] and [url]"),
        (f"my id is {PLATFORM_ID}, I'm @jane_doe_92", "my id is [number], I'm [handle]"),
        ("I'm 33 and it cost 12.50 in 1990", "I'm 33 and it cost 12.50 in 1990"),
        ("", ""),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text)[0] == expected
