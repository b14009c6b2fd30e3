"""What the semantic layer's training and threshold code reads (issue 17): the spent v3 set split
into a trained half and a threshold half, and a held-out folder below tests/safety_cases/ (v4)
never read by training, threshold choice or the overlap check's training side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.safety import semantic_data
from bot.safety.semantic_cli import CONVERSATION_POOL, VALIDATION_POOL, is_spent
from bot.safety.semantic_data import (
    case_rows,
    dev_case_files,
    evaluation_texts,
    near_repeat_keys,
    v3_half,
    v3_training_rows,
)


def _write(path: Path, texts: list[str], level: str = "none") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"text": t, "level": level, "category": None, "tier": "control"} for t in texts]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project tree with dev files, a spent v3 set, training data and a v4 held-out folder."""
    cases = tmp_path / "tests" / "safety_cases"
    _write(cases / "controls.jsonl", ["a dev control about the weather"])
    _write(
        cases / "v3" / "heldout.jsonl", [f"v3 message number {i} about a day" for i in range(40)]
    )
    _write(cases / "v3" / "heldout_conversations.jsonl", ["v3 conversation"])
    for name in ("validation", "heldout", "validation_conversations", "heldout_conversations"):
        _write(cases / "v2" / f"{name}.jsonl", [f"v2 {name} case"])
    _write(cases / "v4" / "heldout.jsonl", ["A V4 SECRET CASE"])
    _write(cases / "v4" / "heldout_conversations.jsonl", ["A V4 SECRET TURN"])
    _write(tmp_path / "data" / "safety" / "controls_4.jsonl", ["a training control"])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    seen: list[Path] = []
    original = Path.read_text

    def recording(self: Path, *args: object, **kwargs: object) -> str:
        seen.append(self.resolve())
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", recording)
    return seen


def test_training_and_threshold_inputs_never_read_v4(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _reads(monkeypatch)
    dev = dev_case_files()
    keys = evaluation_texts([*dev, *VALIDATION_POOL, *CONVERSATION_POOL])
    near_repeat_keys(Path("data/safety"), keys)
    v3_training_rows()
    v4 = (tree / "tests" / "safety_cases" / "v4").resolve()
    assert seen, "the recorder saw no reads: the test would pass on nothing"
    assert not [p for p in seen if v4 in p.parents]
    assert not any("v4" in str(p) for p in [*dev, *VALIDATION_POOL, *CONVERSATION_POOL])
    assert "a v4 secret case" not in keys
    assert [p.name for p in dev] == ["controls.jsonl"]


def test_train_semantic_refuses_a_v4_file_but_takes_the_spent_sets(tree: Path) -> None:
    v4 = Path("tests/safety_cases/v4/heldout.jsonl")
    assert not is_spent(v4)
    assert all(is_spent(p) for p in VALIDATION_POOL if p.name.startswith("heldout"))
    result = CliRunner().invoke(cli, ["safety", "train-semantic", "--validation", str(v4)])
    assert result.exit_code != 0
    assert "held-out files are never used" in result.output


def test_v3_is_split_into_a_trained_half_and_a_threshold_half(tree: Path) -> None:
    v3 = Path("tests/safety_cases/v3/heldout.jsonl")
    pool = {r["text"] for r in case_rows(v3)}
    trained = {r["text"] for r in v3_training_rows()}
    assert pool and trained and not pool & trained
    assert len(pool) + len(trained) == 40
    assert all(v3_half(t) == "pool" for t in pool)
    # the split follows the normalised text: a copy in other case and punctuation stays put
    assert {v3_half(t.upper() + "!") for t in pool} == {"pool"}
    # evaluation texts (what training must not repeat) hold only the threshold half
    keys = evaluation_texts([v3])
    assert {semantic_data.dedup_key(t) for t in trained}.isdisjoint(keys)
