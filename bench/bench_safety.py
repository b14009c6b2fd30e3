"""Safety layer: cost of the crisis screen and the reply guard per message.

Workload: ESConv seeker utterances as user messages and supporter utterances as replies (from
SOLACE_DATA_DIR; without it, the project's own safety case files stand in). The baseline,
measured in the same run, is the cheapest screen one could write: `text.lower()` and a substring
scan for a list of crisis keywords. Target (issue 5): the screen adds < 1 ms per message.
Also reported: the screen on a 100,000-character message (bounded by design), and the share of
ESConv seeker turns the screen flags as a crisis (unlabelled, so context rather than a rate).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

QUICK_MESSAGES = 1_500
FULL_MESSAGES = 12_000
TARGET_MS_PER_MESSAGE = 1.0
BASELINE_KEYWORDS = (
    "suicide", "suicidal", "kill myself", "end my life", "want to die", "self harm", "cut myself",
    "hurt myself", "overdose", "hang myself", "better off dead", "no reason to live", "abuse",
    "hits me", "beats me", "raped", "kill him", "kill her", "shoot", "stab", "can't breathe",
    "heart attack", "unconscious", "bleeding", "pills", "kms", "unalive", "goodbye",
)  # fmt: skip
CASES_DIR = Path(__file__).resolve().parent.parent / "tests" / "safety_cases"


def _workload(quick: bool) -> tuple[list[str], list[str], str]:
    """(user messages, replies, description of the source)."""
    limit = QUICK_MESSAGES if quick else FULL_MESSAGES
    try:
        from dialogue.datasets import load_spec

        dialogues = load_spec("esconv:all").dialogues
        users = [t.text for d in dialogues for t in d.turns if t.role == "user"][:limit]
        replies = [t.text for d in dialogues for t in d.turns if t.role == "assistant"][:limit]
        if users and replies:
            return users, replies, f"ESConv ({len(users)} seeker / {len(replies)} supporter turns)"
    except Exception as exc:  # no data set here: fall back to the case files
        source = f"case files (ESConv unavailable: {type(exc).__name__})"
    else:
        source = "case files (ESConv empty)"
    texts = [json.loads(x)["text"] for p in CASES_DIR.glob("*.jsonl") for x in p.open()]
    repeats = max(1, limit // max(1, len(texts)))
    return texts * repeats, texts * repeats, source


def _baseline(text: str) -> bool:
    low = text.lower()
    return any(k in low for k in BASELINE_KEYWORDS)


def _per_message_us(func: Callable[[str], object], texts: Sequence[str], rounds: int) -> float:
    """Best-of-`rounds` mean microseconds per text."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for text in texts:
            func(text)
        best = min(best, time.perf_counter() - start)
    return best / len(texts) * 1e6


def run(quick: bool) -> str:
    """Measure and return the Markdown section."""
    from bot.safety import SafetyLayer, screen_message
    from bot.safety.text import normalize

    users, replies, source = _workload(quick)
    rounds = 2 if quick else 3
    layer = SafetyLayer()
    screen_message("warm up the pattern cache")
    base = _per_message_us(_baseline, users, rounds)
    screen = _per_message_us(screen_message, users, rounds)
    norm = _per_message_us(normalize, users, rounds)
    guard = _per_message_us(lambda t: layer.guard(t, final=True), replies, rounds)
    huge = ("the weather was fine and we talked about the garden. " * 2000)[:100_000]
    huge_us = _per_message_us(screen_message, [huge], rounds)
    flagged = sum(screen_message(t).crisis for t in users)
    return "\n".join(
        [
            "## safety",
            "",
            f"Workload: {source}. Baseline: `str.lower()` + substring scan of "
            f"{len(BASELINE_KEYWORDS)} keywords, same run. Best of {rounds} rounds.",
            "",
            "| step | µs per message | × baseline | target |",
            "| --- | ---: | ---: | --- |",
            f"| baseline (lower + substring) | {base:.1f} | 1.0 | |",
            f"| normalise only | {norm:.1f} | {norm / base:.1f} | |",
            f"| crisis screen (`screen_message`) | {screen:.1f} | {screen / base:.1f} | "
            f"< {TARGET_MS_PER_MESSAGE * 1000:.0f} µs: "
            f"{'met' if screen < TARGET_MS_PER_MESSAGE * 1000 else 'NOT met'} |",
            f"| reply guard (`guard(final=True)`) on supporter turns | {guard:.1f} | "
            f"{guard / base:.1f} | |",
            f"| crisis screen on one 100,000-char message | {huge_us:.0f} | {huge_us / base:.0f} | "
            "bounded |",
            "",
            f"Seeker turns flagged as crisis: {flagged} of {len(users)} "
            f"({flagged / len(users):.2%}); ESConv is unlabelled for crisis, so this is context.",
        ]
    )
