"""ExTES records: `{"scene", "description", "content": [{"User"} | {"AI Strategy", "AI"}]}`,
the file format `dialogue.datasets.load_extes` reads, to and from `Turn`s."""

from __future__ import annotations

from typing import Any

from dialogue.types import Dialogue, Turn


def to_record(scene: str, description: str, turns: list[Turn] | tuple[Turn, ...]) -> dict[str, Any]:
    """An ExTES record; an AI turn without a strategy gets "" (as ExTES greetings do)."""
    content: list[dict[str, str]] = []
    for turn in turns:
        if turn.role == "user":
            content.append({"User": turn.text})
        else:
            content.append({"AI Strategy": turn.strategy or "", "AI": turn.text})
    return {"scene": scene, "description": description, "content": content}


def dialogue_record(dialogue: Dialogue) -> dict[str, Any]:
    """A loaded dialogue as an ExTES record."""
    return to_record(dialogue.scene or "", dialogue.description or "", dialogue.turns)


def record_turns(record: dict[str, Any]) -> list[Turn]:
    """The turns of a record made by `to_record`."""
    turns = []
    for item in record["content"]:
        if "User" in item:
            turns.append(Turn("user", item["User"]))
        else:
            turns.append(Turn("assistant", item["AI"], item.get("AI Strategy") or None))
    return turns


def record_dialogue(record: dict[str, Any], dialogue_id: str, source: str = "synth") -> Dialogue:
    """A record made by `to_record` as a `Dialogue`."""
    return Dialogue(
        dialogue_id, source, record["scene"], record["description"], tuple(record_turns(record))
    )
