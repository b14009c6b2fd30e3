"""Validation and repair of one generated answer, in gate order; every outcome has a reason.

Gates: parse (code fences and surrounding prose tolerated) → schema → strategy names → turn
alternation and lengths → safety (the reply guard and the crisis screen over every AI turn; the
crisis screen over the help-seeker's turns and description) → copy of the example seed. The
near-duplicate gate needs the whole run's state and lives in the pipeline. An answer that fails
a gate is rejected under that gate's reason; repairs are counted beside it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from dialogue.strategies import EXTES_STRATEGIES, classify_strategy
from dialogue.types import Dialogue, Turn
from synthesis.config import ValidationConfig
from synthesis.dedup import jaccard, shingles
from synthesis.records import record_turns, to_record

Kind = Literal["rejected", "repaired", "noted"]

REASONS: dict[str, tuple[Kind, str]] = {
    "empty_answer": ("rejected", "the endpoint returned no text"),
    "no_json": ("rejected", "no JSON object in the answer"),
    "truncated_json": ("rejected", "the JSON is cut off (answer hit max_tokens or stopped)"),
    "invalid_json": ("rejected", "the JSON does not parse"),
    "not_a_dialogue": ("rejected", "the JSON is not an object with a 'content' list"),
    "bad_turn": ("rejected", "a turn is not {'User': text} or {'AI': text, 'AI Strategy': name}"),
    "description_missing": ("rejected", "no description"),
    "description_too_short": ("rejected", "description shorter than min_description_words"),
    "strategy_unknown": ("rejected", "an AI Strategy outside the taxonomy"),
    "strategies_missing": ("rejected", "too many AI turns without a strategy"),
    "not_alternating": ("rejected", "two turns in a row by the same speaker"),
    "too_few_turns": ("rejected", "fewer utterances than min_turns"),
    "too_many_turns": ("rejected", "more utterances than max_turns"),
    "turn_too_long": ("rejected", "an utterance longer than max_words_per_turn"),
    "unsafe_supporter": ("rejected", "an AI turn fails the reply guard or the crisis screen"),
    "seeker_crisis": ("rejected", "a help-seeker turn or the description is a crisis"),
    "copies_seed": ("rejected", "the dialogue copies its example seed"),
    "near_duplicate": ("rejected", "near-duplicate of a dialogue already generated or a seed"),
    "code_fence": ("repaired", "JSON taken out of a code fence"),
    "surrounding_prose": ("repaired", "text around the JSON ignored"),
    "unwrapped": ("repaired", "the dialogue was wrapped in a list or an outer object"),
    "turn_shape": ("repaired", "a {'role', 'content'} turn read as User/AI"),
    "turn_both_roles": ("repaired", "a turn holding 'User' and 'AI' split in two"),
    "turn_unknown_keys": ("repaired", "unknown keys in a turn ignored"),
    "text_whitespace": ("repaired", "whitespace normalised"),
    "scene_replaced": ("repaired", "scene missing or not the one asked for: set to the scenario"),
    "strategy_variant": ("repaired", "strategy label variant mapped to its canonical name"),
    "strategy_close_match": ("repaired", "misspelt strategy label mapped to the closest name"),
    "strategy_label_dropped": ("repaired", "unknown strategy label removed (drop_label)"),
    "strategy_on_user_turn": ("repaired", "a strategy on a User turn ignored"),
    "strategy_missing": ("noted", "an AI turn without a strategy (within the allowed share)"),
    "opens_with_ai": ("noted", "the dialogue opens with the AI"),
}

_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)(?:```|\Z)", re.DOTALL)
_ROLE_KEYS = {"user": "user", "human": "user", "ai": "assistant", "assistant": "assistant"}
_TEXT_KEYS = ("content", "text", "message", "utterance")
_STRATEGY_KEYS = ("AI Strategy", "strategy", "Strategy", "ai_strategy")
CLOSE_MATCH_CUTOFF = 0.85
VERBATIM_MIN_WORDS = 6


class Rejected(Exception):
    """An answer failed a gate: `reason` is a key of REASONS, `detail` a short label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Verdict:
    """The outcome for one answer: the clean record, or the first failed gate's reason."""

    record: dict[str, Any] | None = None
    reason: str | None = None
    detail: str = ""
    repairs: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        """True when the answer passed every gate checked here."""
        return self.reason is None and self.record is not None


def extract_json(answer: str, finish_reason: str | None, repairs: Counter[str]) -> Any:
    """The first JSON value in `answer` (fences and prose around it tolerated)."""
    text = answer.strip()
    if not text:
        raise Rejected("empty_answer")
    fence = _FENCE_RE.search(text)
    if fence and "{" in fence.group(1):
        if text[: fence.start()].strip() or text[fence.end() :].strip():
            repairs["surrounding_prose"] += 1
        repairs["code_fence"] += 1
        text = fence.group(1).strip()
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        raise Rejected("no_json")
    start = min(starts)
    try:
        value, end = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as exc:
        if finish_reason == "length" or _unclosed(text, start):
            raise Rejected("truncated_json", f"finish_reason={finish_reason}") from exc
        raise Rejected("invalid_json", exc.msg) from exc
    except RecursionError as exc:  # hostile nesting ("[[[[..."): the decoder recurses per level
        raise Rejected("invalid_json", "nested too deeply") from exc
    if text[:start].strip() or text[end:].strip():
        repairs["surrounding_prose"] += 1
    return value


def _unclosed(text: str, start: int) -> bool:
    """True when the JSON stops inside a string or with brackets open (cut off, not malformed)."""
    stack: list[str] = []
    in_string, escaped = False, False
    for char in text[start:]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]":
            if not stack or stack.pop() != char:
                return False
            if not stack:
                return False  # a complete value that still failed to parse: malformed
    return in_string or bool(stack)


def _unwrap(value: Any, repairs: Counter[str]) -> dict[str, Any]:
    """The dialogue object, taken out of a one-item list or a one-key outer object."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
        repairs["unwrapped"] += 1
    if isinstance(value, dict) and "content" not in value and len(value) == 1:
        inner = next(iter(value.values()))
        if isinstance(inner, dict) and "content" in inner:
            value = inner
            repairs["unwrapped"] += 1
    if not isinstance(value, dict) or not isinstance(value.get("content"), list):
        raise Rejected("not_a_dialogue", type(value).__name__)
    return value


def _text(value: Any, where: str, repairs: Counter[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Rejected("bad_turn", f"{where}: no text")
    text = " ".join(value.split())
    if text != value:
        repairs["text_whitespace"] += 1
    return text


def _turns(items: list[Any], repairs: Counter[str]) -> list[tuple[str, str, Any]]:
    """(role, text, raw strategy label or None) for every item; bad items reject."""
    out: list[tuple[str, str, Any]] = []
    for index, item in enumerate(items):
        where = f"turn {index}"
        if not isinstance(item, dict):
            raise Rejected("bad_turn", f"{where}: {type(item).__name__}")
        label = next((item[k] for k in _STRATEGY_KEYS if k in item), None)
        if "User" in item or "AI" in item:
            extra = set(item) - {"User", "AI", "AI Strategy"}
            if extra:
                repairs["turn_unknown_keys"] += 1
            if "User" in item and "AI" in item:
                repairs["turn_both_roles"] += 1
            if "User" in item:
                if "AI" not in item and label not in (None, ""):
                    repairs["strategy_on_user_turn"] += 1
                out.append(("user", _text(item["User"], where, repairs), None))
            if "AI" in item:
                out.append(("assistant", _text(item["AI"], where, repairs), label))
            continue
        role = _ROLE_KEYS.get(str(item.get("role", item.get("speaker", ""))).strip().lower())
        text_key = next((k for k in _TEXT_KEYS if k in item), None)
        if role is None or text_key is None:
            raise Rejected("bad_turn", f"{where}: keys {sorted(item)[:4]}")
        repairs["turn_shape"] += 1
        out.append((role, _text(item[text_key], where, repairs), label))
    return out


def _close_match(label: str) -> str | None:
    names = {name.casefold(): name for name in EXTES_STRATEGIES}
    found = difflib.get_close_matches(
        label.casefold().strip(), names, n=1, cutoff=CLOSE_MATCH_CUTOFF
    )
    return names[found[0]] if found else None


def _strategy(label: Any, cfg: ValidationConfig, repairs: Counter[str]) -> str | None:
    """Canonical strategy name for an AI turn's label (None when absent or dropped)."""
    name, outcome = classify_strategy(label, "extes")
    if outcome == "variant":
        repairs["strategy_variant"] += 1
    elif outcome == "empty":
        repairs["strategy_missing"] += 1
    elif outcome == "unknown":
        close = _close_match(label) if isinstance(label, str) else None
        if close is not None:
            repairs["strategy_close_match"] += 1
            return close
        if cfg.unknown_strategy == "reject":
            raise Rejected("strategy_unknown", repr(label)[:60])
        repairs["strategy_label_dropped"] += 1
    return name


def _check_shape(turns: list[Turn], cfg: ValidationConfig, repairs: Counter[str]) -> None:
    for index in range(1, len(turns)):
        if turns[index].role == turns[index - 1].role:
            raise Rejected("not_alternating", f"turn {index}")
    if len(turns) < cfg.min_turns:
        raise Rejected("too_few_turns", str(len(turns)))
    if len(turns) > cfg.max_turns:
        raise Rejected("too_many_turns", str(len(turns)))
    for index, turn in enumerate(turns):
        if len(turn.text.split()) > cfg.max_words_per_turn:
            raise Rejected("turn_too_long", f"turn {index}")
    if turns[0].role == "assistant":
        repairs["opens_with_ai"] += 1
    ai_turns = [t for t in turns if t.role == "assistant"]
    missing = sum(t.strategy is None for t in ai_turns)
    if ai_turns and missing / len(ai_turns) > cfg.max_missing_strategy_fraction:
        raise Rejected("strategies_missing", f"{missing} of {len(ai_turns)}")


def check_safety(description: str, turns: list[Turn], cfg: ValidationConfig) -> None:
    """Reply guard + crisis screen on AI turns; crisis screen on the seeker's side."""
    from bot.safety import guard_reply, screen_message

    for turn in turns:
        if turn.role == "assistant":
            guard = guard_reply(turn.text, final=True)
            if not guard.ok:
                raise Rejected("unsafe_supporter", f"guard:{guard.reason}")
            screen = screen_message(turn.text)
            if screen.crisis:
                raise Rejected("unsafe_supporter", f"screen:{screen.category}")
        elif cfg.seeker_crisis == "reject":
            screen = screen_message(turn.text)
            if screen.crisis:
                raise Rejected("seeker_crisis", f"user_turn:{screen.category}")
    if cfg.seeker_crisis == "reject" and (screen := screen_message(description)).crisis:
        raise Rejected("seeker_crisis", f"description:{screen.category}")


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def check_seed_copy(turns: list[Turn], seed: Dialogue, cfg: ValidationConfig) -> None:
    """Reject a dialogue too close to its example: 3-gram Jaccard or verbatim turns."""
    score = jaccard(shingles(t.text for t in turns), shingles(t.text for t in seed.turns))
    if score >= cfg.seed_copy_threshold:
        raise Rejected("copies_seed", f"jaccard {score:.2f}")
    seed_texts = {_norm(t.text) for t in seed.turns if len(t.text.split()) >= VERBATIM_MIN_WORDS}
    copied = sum(_norm(t.text) in seed_texts for t in turns)
    if turns and copied / len(turns) >= cfg.seed_copy_turn_fraction:
        raise Rejected("copies_seed", f"{copied} verbatim turns")


class Validator:
    """Runs the gates with one `ValidationConfig`."""

    def __init__(self, cfg: ValidationConfig) -> None:
        self.cfg = cfg

    def check_value(self, value: Any, scene: str, repairs: Counter[str]) -> dict[str, Any]:
        """Schema, strategies, shape and safety of a parsed value; the clean record."""
        obj = _unwrap(value, repairs)
        raw_scene = obj.get("scene")
        if (
            not isinstance(raw_scene, str)
            or " ".join(raw_scene.split()).casefold() != scene.casefold()
        ):
            repairs["scene_replaced"] += 1
        description = obj.get("description")
        if not isinstance(description, str) or not description.strip():
            raise Rejected("description_missing")
        description = " ".join(description.split())
        if len(description.split()) < self.cfg.min_description_words:
            raise Rejected("description_too_short", str(len(description.split())))
        turns = [
            Turn(role, text, _strategy(label, self.cfg, repairs) if role == "assistant" else None)  # type: ignore[arg-type]
            for role, text, label in _turns(obj["content"], repairs)
        ]
        _check_shape(turns, self.cfg, repairs)
        check_safety(description, turns, self.cfg)
        return to_record(scene, description, turns)

    def check(
        self, answer: str, scene: str, seed: Dialogue | None, finish_reason: str | None = None
    ) -> Verdict:
        """Every gate but de-duplication, for one raw answer."""
        verdict = Verdict()
        try:
            value = extract_json(answer, finish_reason, verdict.repairs)
            record = self.check_value(value, scene, verdict.repairs)
            if seed is not None:
                check_seed_copy(record_turns(record), seed, self.cfg)
        except Rejected as exc:
            verdict.reason, verdict.detail = exc.reason, exc.detail
            return verdict
        verdict.record = record
        return verdict

    def check_edit(self, record: Any, scene: str) -> Verdict:
        """The gates for a reviewer's edit (no seed-copy or duplicate check: a human wrote it)."""
        verdict = Verdict()
        try:
            verdict.record = self.check_value(record, scene, verdict.repairs)
        except Rejected as exc:
            verdict.reason, verdict.detail = exc.reason, exc.detail
        return verdict
