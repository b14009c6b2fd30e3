"""Turning ESConv and ExTES records into `Dialogue`s, repairing or rejecting each with a reason.

Every irregularity is counted in a `LoadReport` under one of the reasons in `REASONS`; nothing
is dropped silently. See docs/data.md for what each reason means.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from dialogue.strategies import Taxonomy, classify_strategy
from dialogue.types import Dialogue, Role, Turn

Action = Literal["rejected", "repaired", "dropped", "kept"]

# reason -> (what the loader did, why). "dropped" removes one turn, "rejected" a whole record,
# "kept" marks a legitimate but notable property left as it is.
REASONS: dict[str, tuple[Action, str]] = {
    "record_not_object": ("rejected", "the record is not a JSON object"),
    "no_turns_field": ("rejected", "no 'content' (ExTES) or 'dialog' (ESConv) list"),
    "no_usable_turns": ("rejected", "no turn with text is left"),
    "no_user_turn": ("rejected", "no help-seeker turn"),
    "no_assistant_turn": ("rejected", "no supporter turn"),
    "turn_not_object": ("dropped", "a turn is not a JSON object"),
    "turn_no_role": ("dropped", "a turn holds neither 'User' nor 'AI'"),
    "speaker_unknown": ("dropped", "speaker is not usr/sys, seeker/supporter or speaker/listener"),
    "text_not_string": ("dropped", "the text is missing or not a string"),
    "text_empty": ("dropped", "the text is empty or whitespace only"),
    "turn_both_roles": ("repaired", "a turn holds 'User' and 'AI': split, User first"),
    "ai_response_dict": ("repaired", "'AI' is an object: its 'Response' text is used"),
    "text_whitespace": ("repaired", "whitespace normalised (trimmed, runs collapsed)"),
    "turn_unknown_keys": ("repaired", "unknown keys in a turn ignored"),
    "strategy_variant": ("repaired", "strategy label variant mapped to its canonical name"),
    "strategy_unknown": ("repaired", "strategy label outside the taxonomy: set to None"),
    "strategy_on_user_turn": ("repaired", "a strategy on a help-seeker turn ignored"),
    "merged_same_speaker": ("repaired", "turn merged into the previous same-speaker turn"),
    "scene_missing": ("repaired", "scene missing or empty: set to None"),
    "description_missing": ("repaired", "description missing or empty: set to None"),
    "strategy_empty": ("kept", "supporter turn with an empty strategy label: set to None"),
    "strategy_null": ("kept", "supporter turn with a null strategy: set to None"),
    "strategy_absent": ("kept", "supporter turn without a strategy key: set to None"),
    "opens_with_assistant": ("kept", "the dialogue opens with the supporter"),
    "same_speaker_run": ("kept", "turn follows a turn by the same speaker"),
}

ESCONV_SPEAKERS: dict[str, Role] = {
    "usr": "user",
    "seeker": "user",
    "speaker": "user",
    "sys": "assistant",
    "supporter": "assistant",
    "listener": "assistant",
}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class RecordIssue:
    """One repair, drop, rejection or note for one record (index in its file)."""

    record: int
    reason: str
    detail: str = ""
    source: str = ""  # the file, set when reports of several files are merged


@dataclass
class LoadReport:
    """What a load did: counts per reason and each record's issues. Nothing is silent."""

    source: str
    records: int = 0
    loaded: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    issues: list[RecordIssue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        """Records rejected (not loaded)."""
        return self.records - self.loaded

    def add(self, record: int, reason: str, detail: str = "") -> None:
        """Count one occurrence of `reason` (a key of `REASONS`) for record `record`."""
        if reason not in REASONS:
            raise KeyError(f"unknown load-report reason {reason!r}")
        self.counts[reason] += 1
        self.issues.append(RecordIssue(record, reason, detail))

    def by_action(self, action: Action) -> dict[str, int]:
        """Counts of the reasons whose action is `action`, largest first."""
        items = [(r, n) for r, n in self.counts.items() if REASONS[r][0] == action]
        return dict(sorted(items, key=lambda item: (-item[1], item[0])))

    def merge(self, other: LoadReport) -> None:
        """Add another report's counts into this one (record indices stay per file)."""
        self.records += other.records
        self.loaded += other.loaded
        self.counts.update(other.counts)
        self.issues.extend(
            issue if issue.source else replace(issue, source=other.source) for issue in other.issues
        )
        self.warnings.extend(other.warnings)
        self.notes.extend(other.notes)

    def summary_lines(self) -> list[str]:
        """Human-readable summary: totals, then each reason with its count and meaning."""
        lines = [
            f"load report for {self.source}: {self.records} records, {self.loaded} loaded, "
            f"{self.rejected} rejected"
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  note: {n}" for n in self.notes]
        for action in ("rejected", "dropped", "repaired", "kept"):
            for reason, count in self.by_action(action).items():  # type: ignore[arg-type]
                lines.append(f"  {action:<8} {count:>7}  {reason}: {REASONS[reason][1]}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (counts only, not the per-record issues)."""
        return {
            "source": self.source,
            "records": self.records,
            "loaded": self.loaded,
            "rejected": self.rejected,
            "counts": dict(sorted(self.counts.items())),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


Note = Callable[[str, str], None]


def _clean_text(value: object, note: Note, where: str) -> str | None:
    """The utterance text with whitespace normalised, or None (noted) if unusable."""
    if not isinstance(value, str):
        note("text_not_string", f"{where}: {type(value).__name__}")
        return None
    text = " ".join(value.split())
    if not text:
        note("text_empty", where)
        return None
    if text != value:
        note("text_whitespace", where)
    return text


def _strategy(label: object, taxonomy: Taxonomy, note: Note, where: str) -> str | None:
    """Canonical strategy of a supporter turn; every non-canonical case is noted."""
    if label is _MISSING:
        note("strategy_absent", where)
        return None
    name, outcome = classify_strategy(label, taxonomy)
    if outcome == "empty":
        note("strategy_null" if label is None else "strategy_empty", where)
    elif outcome == "variant":
        note("strategy_variant", f"{where}: {label!r} -> {name!r}")
    elif outcome == "unknown":
        note("strategy_unknown", f"{where}: {label!r}")
    return name


def _extes_turn(item: dict[str, Any], note: Note, where: str) -> list[Turn]:
    """The 0, 1 or 2 turns one ExTES content item holds."""
    extra = sorted(set(item) - {"User", "AI", "AI Strategy"})
    if extra:
        note("turn_unknown_keys", f"{where}: {extra}")
    has_user, has_ai = "User" in item, "AI" in item
    if not has_user and not has_ai:
        note("turn_no_role", where)
        return []
    if has_user and has_ai:
        note("turn_both_roles", where)
    turns: list[Turn] = []
    if has_user:
        if not has_ai and item.get("AI Strategy"):
            note("strategy_on_user_turn", where)
        text = _clean_text(item["User"], note, where)
        if text is not None:
            turns.append(Turn("user", text))
    if has_ai:
        value = item["AI"]
        label = item.get("AI Strategy", _MISSING)
        if isinstance(value, dict):
            note("ai_response_dict", where)
            if label is _MISSING:
                label = value.get("AI Strategy", value.get("Strategy", _MISSING))
            value = value.get("Response", value.get("response"))
        text = _clean_text(value, note, where)
        if text is not None:
            turns.append(Turn("assistant", text, _strategy(label, "extes", note, where)))
    return turns


def _esconv_turn(
    item: dict[str, Any], note: Note, where: str, feedback: dict[int, str], position: int
) -> Turn | None:
    """One ESConv utterance, HF split (`text`/`usr`/`sys`) or raw (`content`/`annotation`)."""
    role = ESCONV_SPEAKERS.get(str(item.get("speaker", "")).strip().lower())
    if role is None:
        note("speaker_unknown", f"{where}: {item.get('speaker')!r}")
        return None
    raw_annotation = item.get("annotation")
    annotation: dict[str, Any] = raw_annotation if isinstance(raw_annotation, dict) else {}
    label = item.get("strategy", annotation.get("strategy", _MISSING))
    if "feedback" in annotation:
        feedback[position] = str(annotation["feedback"])
    text = _clean_text(item.get("text", item.get("content")), note, where)
    if text is None:
        return None
    if role == "user":
        if label not in (_MISSING, None, ""):
            note("strategy_on_user_turn", where)
        return Turn("user", text)
    return Turn("assistant", text, _strategy(label, "esconv", note, where))


def _arrange(turns: list[Turn], merge: bool, note: Note) -> list[Turn]:
    """Keep same-speaker runs (noted) or merge them, joining texts with a space."""
    arranged: list[Turn] = []
    for index, turn in enumerate(turns):
        if arranged and arranged[-1].role == turn.role:
            if merge:
                previous = arranged[-1]
                strategy = previous.strategy or turn.strategy
                arranged[-1] = Turn(turn.role, f"{previous.text} {turn.text}", strategy)
                note("merged_same_speaker", f"turn {index}")
                continue
            note("same_speaker_run", f"turn {index}")
        arranged.append(turn)
    return arranged


def _optional_text(record: dict[str, Any], key: str, reason: str, note: Note) -> str | None:
    value = record.get(key)
    if isinstance(value, str) and value.strip():
        return value.strip()
    note(reason, f"{key}={value!r}" if key in record else f"no {key!r}")
    return None


def parse_record(
    record: object,
    index: int,
    schema: Literal["esconv", "extes"],
    dialogue_id: str,
    report: LoadReport,
    merge_consecutive: bool = False,
) -> Dialogue | None:
    """One record → a `Dialogue`, or None when rejected; every case is added to `report`."""

    def note(reason: str, detail: str = "") -> None:
        report.add(index, reason, detail)

    report.records += 1
    if not isinstance(record, dict):
        note("record_not_object", type(record).__name__)
        return None
    key = "dialog" if schema == "esconv" else "content"
    items = record.get(key)
    if not isinstance(items, list):
        note("no_turns_field", f"{key!r} is {type(items).__name__}")
        return None
    turns, feedback = _parse_items(items, schema, note)
    roles = {turn.role for turn in turns}
    for reason, ok in (
        ("no_usable_turns", bool(turns)),
        ("no_user_turn", "user" in roles),
        ("no_assistant_turn", "assistant" in roles),
    ):
        if not ok:
            note(reason)
            return None
    turns = _arrange(turns, merge_consecutive, note)
    if turns[0].role == "assistant":
        note("opens_with_assistant")
    if schema == "esconv":
        scene = _optional_text(record, "problem_type", "scene_missing", note)
        description = _optional_text(record, "situation", "description_missing", note)
        meta = {k: v for k, v in record.items() if k not in ("dialog", "problem_type", "situation")}
        if feedback:
            meta["feedback"] = feedback
    else:
        scene = _optional_text(record, "scene", "scene_missing", note)
        description = _optional_text(record, "description", "description_missing", note)
        meta = {k: v for k, v in record.items() if k not in ("content", "scene", "description")}
    report.loaded += 1
    return Dialogue(dialogue_id, schema, scene, description, tuple(turns), meta)


def _parse_items(
    items: list[Any], schema: Literal["esconv", "extes"], note: Note
) -> tuple[list[Turn], dict[int, str]]:
    """All turns of one record, in order; ESConv feedback keyed by utterance position."""
    turns: list[Turn] = []
    feedback: dict[int, str] = {}
    for position, item in enumerate(items):
        where = f"turn {position}"
        if not isinstance(item, dict):
            note("turn_not_object", f"{where}: {type(item).__name__}")
            continue
        if schema == "extes":
            turns.extend(_extes_turn(item, note, where))
        else:
            turn = _esconv_turn(item, note, where, feedback, position)
            if turn is not None:
                turns.append(turn)
    return turns, feedback
