"""The judge's prompts (the seed paper's dialogue-level rubric) and robust answer parsing.

Kept apart from `scoring.judge` (the client); `scoring.judge` re-exports these names.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

CRITERIA: tuple[str, ...] = ("Engagement", "Comforting", "Appropriateness", "Suggestion")
SCORE_MIN, SCORE_MAX = 0, 5
Dialogue = Sequence[tuple[str, str]]

SYSTEM_PROMPT = (
    "You are an expert in emotional support conversations, trained in Hill's helping skills "
    "(exploration, comforting, action). You rate the SUPPORTER's side of a conversation "
    "strictly and consistently. You answer with a JSON object only."
)
RUBRIC = (
    "Rate the supporter in the CANDIDATE conversation on each criterion from 0 (very poor) to "
    "5 (excellent), using whole numbers:\n"
    "- Engagement: attentive, curious and involved; asks good questions; keeps the seeker "
    "talking.\n"
    "- Comforting: acknowledges and validates the seeker's feelings; warm and reassuring.\n"
    "- Appropriateness: fitting, safe, coherent and relevant replies; nothing harmful, "
    "dismissive or off-topic.\n"
    "- Suggestion: helpful, concrete and well-timed suggestions that fit the seeker's "
    "situation.\n"
)
ANSWER_FORMAT = (
    'Answer with only this JSON object: {"Engagement": <0-5>, "Comforting": <0-5>, '
    '"Appropriateness": <0-5>, "Suggestion": <0-5>}'
)
REASK = "Your answer could not be read. " + ANSWER_FORMAT
SCORE_SCHEMA = {
    "type": "object",
    "properties": {
        c: {"type": "integer", "minimum": SCORE_MIN, "maximum": SCORE_MAX} for c in CRITERIA
    },
    "required": list(CRITERIA),
    "additionalProperties": False,
}
PAIR_SCHEMA = {
    "type": "object",
    "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]}},
    "required": ["winner"],
    "additionalProperties": False,
}


def format_dialogue(dialogue: Dialogue) -> str:
    """A transcript with Seeker/Supporter labels."""
    names = {"user": "Seeker", "assistant": "Supporter"}
    lines = []
    for role, text in dialogue:
        if role not in names:
            raise ValueError(f"dialogue role must be user or assistant, got {role!r}")
        lines.append(f"{names[role]}: {' '.join(text.split())}")
    return "\n".join(lines)


def rubric_messages(candidate: Dialogue, reference: Dialogue | None = None) -> list[dict[str, str]]:
    """The chat messages for one rubric judgement."""
    parts = [RUBRIC]
    if reference:
        parts.append(
            "A REFERENCE conversation by a trained human supporter with the same seeker is shown "
            "for calibration only; rate the candidate, not the reference.\n\n"
            f"REFERENCE:\n{format_dialogue(reference)}\n"
        )
    parts.append(f"CANDIDATE:\n{format_dialogue(candidate)}\n")
    parts.append(ANSWER_FORMAT)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n".join(parts)},
    ]


def pair_messages(
    first: Dialogue, second: Dialogue, reference: Dialogue | None = None
) -> list[dict[str, str]]:
    """Messages asking which of two supporters (A = first, B = second) did better overall."""
    parts = [
        "Two supporters answered the same help-seeker. Considering engagement, comforting, "
        "appropriateness and suggestions, which supporter was better overall? Do not let the "
        "length of the replies or their order influence you."
    ]
    if reference:
        parts.append(f"REFERENCE (human supporter, for calibration):\n{format_dialogue(reference)}")
    parts.append(f"CONVERSATION A:\n{format_dialogue(first)}")
    parts.append(f"CONVERSATION B:\n{format_dialogue(second)}")
    parts.append('Answer with only this JSON object: {"winner": "A" | "B" | "tie"}')
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object found in `text` (fenced, bare or embedded in prose)."""
    found: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text[match.start() :])
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            found.append(obj)
    return found


def _as_score(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*5)?\s*", value)
        value = float(m.group(1)) if m else None
    if isinstance(value, int | float) and math.isfinite(value) and SCORE_MIN <= value <= SCORE_MAX:
        return float(value)
    return None


def parse_scores(text: str) -> dict[str, float] | None:
    """The four rubric scores from a judge answer, or None if any is missing or out of range.

    Accepts a JSON object (anywhere in the text, keys case-insensitive) or, failing that,
    lines such as "Engagement: 4" / "**Comforting** - 3/5".
    """
    for obj in _json_objects(text):
        lowered = {str(k).strip().lower(): v for k, v in obj.items()}
        scores = {c: _as_score(lowered.get(c.lower())) for c in CRITERIA}
        if all(v is not None for v in scores.values()):
            return {c: float(v) for c, v in scores.items() if v is not None}
    scores_re: dict[str, float] = {}
    for c in CRITERIA:
        m = re.search(rf"{c}\W{{0,6}}(\d+(?:\.\d+)?)(?!\d)", text, flags=re.IGNORECASE)
        value = _as_score(m.group(1)) if m else None
        if value is None:
            return None
        scores_re[c] = value
    return scores_re


def parse_winner(text: str) -> str | None:
    """ "A", "B" or "tie" from a pairwise answer, or None."""
    for obj in _json_objects(text):
        value = str(obj.get("winner", "")).strip().strip("\"'").lower()
        if value in ("a", "b"):
            return value.upper()
        if value in ("tie", "draw", "equal"):
            return "tie"
    m = re.search(r"\bwinner\W{0,6}(A|B|tie)\b", text, flags=re.IGNORECASE)
    if m:
        return m.group(1).upper() if m.group(1).lower() != "tie" else "tie"
    return None
