"""The review queue: a reviewer accepts, edits or rejects each generated dialogue; only accepted
and edited dialogues enter the output, and they become the next round's seeds.

`ReviewQueue` is the API (a web console can drive it too); `page` is the terminal pager behind
`solace data review`. An edit goes through the same schema, strategy, length and safety gates
as a generated answer, so a reviewer cannot let an unsafe supporter turn through by mistake.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from synthesis.config import ValidationConfig
from synthesis.store import Candidate, RunStore
from synthesis.validate import REASONS, Validator, Verdict

Editor = Callable[[str], str | None]  # JSON text in → edited JSON text, or None (unchanged)


class ReviewQueue:
    """Review decisions over a run store."""

    def __init__(self, store: RunStore, validation: ValidationConfig) -> None:
        self.store = store
        self.validator = Validator(validation)

    def pending(self, round_no: int | None = None) -> list[Candidate]:
        """Candidates not reviewed yet, oldest first."""
        return self.store.candidates(round_no, ("pending",))

    def counts(self, round_no: int | None = None) -> dict[str, int]:
        """Candidates per review status."""
        found = Counter(c.status for c in self.store.candidates(round_no))
        return {k: found.get(k, 0) for k in ("pending", "accepted", "edited", "rejected")}

    def accept(self, candidate: Candidate) -> None:
        """Accept as generated."""
        self.store.decide(candidate.id, "accepted")

    def reject(self, candidate: Candidate, note: str | None = None) -> None:
        """Reject: it never enters the output."""
        self.store.decide(candidate.id, "rejected", note=note)

    def edit(self, candidate: Candidate, record: Any) -> Verdict:
        """Check an edited record through the gates; store it as "edited" when it passes."""
        verdict = self.validator.check_edit(record, candidate.scenario)
        if verdict.ok:
            self.store.decide(candidate.id, "edited", record=verdict.record)
        return verdict


def render(candidate: Candidate, position: str) -> str:
    """A dialogue as the pager shows it."""
    record = candidate.record
    lines = [
        f"── {position}  {candidate.id}  (round {candidate.round}, seed {candidate.seed_id})",
        f"scene: {record['scene']}",
        f"description: {record['description']}",
        "",
    ]
    for number, item in enumerate(record["content"], start=1):
        if "User" in item:
            lines.append(f"{number:>3} User: {item['User']}")
        else:
            lines.append(f"{number:>3} AI [{item.get('AI Strategy') or '-'}]: {item['AI']}")
    if candidate.repairs:
        repairs = ", ".join(f"{k} x{v}" for k, v in sorted(candidate.repairs.items()))
        lines += ["", f"repairs made: {repairs}"]
    return "\n".join(lines)


def page(
    queue: ReviewQueue,
    candidates: list[Candidate],
    *,
    echo: Callable[[str], None],
    ask: Callable[[str], str],
    editor: Editor,
) -> Counter[str]:
    """Show each candidate and apply the reviewer's choice; returns the decisions made.

    `ask(prompt)` returns the reviewer's answer (a/e/r/s/q); `editor(text)` returns the edited
    text, or None when nothing was saved. A failed edit reopens with the reviewer's own text.
    """
    decisions: Counter[str] = Counter()
    for number, candidate in enumerate(candidates, start=1):
        echo(render(candidate, f"{number}/{len(candidates)}"))
        draft = json.dumps(candidate.record, ensure_ascii=False, indent=1)
        while True:
            choice = ask("[a]ccept  [e]dit  [r]eject  [s]kip  [q]uit").strip().lower()[:1]
            if choice == "q":
                return decisions
            if choice == "e":
                done, draft = _edit(queue, candidate, draft, echo, editor)
                if not done:
                    continue
                decisions["edited"] += 1
            elif choice == "a":
                queue.accept(candidate)
                decisions["accepted"] += 1
            elif choice == "r":
                queue.reject(candidate)
                decisions["rejected"] += 1
            elif choice == "s":
                decisions["skipped"] += 1
            else:
                continue
            break
    return decisions


def _edit(
    queue: ReviewQueue,
    candidate: Candidate,
    draft: str,
    echo: Callable[[str], None],
    editor: Editor,
) -> tuple[bool, str]:
    """One edit: (stored, the text to reopen with if the reviewer edits again)."""
    text = editor(draft)
    if text is None:
        echo("no change saved; choose again")
        return False, draft
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        echo(f"the edit is not valid JSON ({exc}); choose again")
        return False, text
    verdict = queue.edit(candidate, record)
    if not verdict.ok:
        reason = verdict.reason or "not_a_dialogue"
        echo(
            f"the edit fails a gate: {reason} ({REASONS[reason][1]}) {verdict.detail}; choose again"
        )
        return False, text
    return True, text
