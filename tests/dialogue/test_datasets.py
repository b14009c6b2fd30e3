"""Loaders: hand-written fixtures with every known irregularity, malformed files, real data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from dialogue.datasets import (
    REASONS,
    DatasetError,
    LoadReport,
    data_dir,
    load_esconv,
    load_extes,
    load_path,
    load_spec,
)
from dialogue.strategies import ESCONV_STRATEGIES, EXTES_STRATEGIES
from tests.paths import FIXTURES

EXTES_IRREGULAR = FIXTURES / "extes_irregular.json"


def _issues(report: LoadReport, record: int) -> set[str]:
    return {issue.reason for issue in report.issues if issue.record == record}


# --- ExTES irregularities ---------------------------------------------------------------


@pytest.fixture(scope="module")
def extes_result():
    return load_extes(EXTES_IRREGULAR)


def test_extes_every_record_is_loaded_or_rejected_with_a_reason(extes_result) -> None:
    report = extes_result.report
    assert report.records == 12
    assert report.loaded == len(extes_result.dialogues) == 7
    assert report.rejected == 5
    rejections = report.by_action("rejected")
    assert rejections == {
        "record_not_object": 1,
        "no_turns_field": 1,
        "no_user_turn": 1,
        "no_assistant_turn": 1,
        "no_usable_turns": 1,
    }
    rejected_records = {i.record for i in report.issues if REASONS[i.reason][0] == "rejected"}
    assert rejected_records == {7, 8, 9, 10, 11}
    loaded_ids = [d.id for d in extes_result.dialogues]
    assert loaded_ids == [f"extes:extes_irregular:{i}" for i in range(7)]


def test_extes_clean_record(extes_result) -> None:
    first = extes_result.dialogues[0]
    assert first.source == "extes"
    assert first.scene == "Academic Stress"
    assert [t.role for t in first.turns] == ["user", "assistant"] * 3
    assert [t.strategy for t in first.turns if t.role == "assistant"] == [
        None,
        "Reflective Statements",
        "Emotional Validation",
    ]
    assert _issues(extes_result.report, 0) == {"strategy_empty"}


def test_extes_strategy_labels_are_normalised(extes_result) -> None:
    pet = extes_result.dialogues[1]
    strategies = [t.strategy for t in pet.turns if t.role == "assistant"]
    # "empathetic statements", "Avoid Judgment And Criticism", "Validation" (not one of the
    # 16), null, "EV" (the README's abbreviation).
    assert strategies == [
        "Empathetic Statements",
        "Avoid Judgment and Criticism",
        None,
        None,
        "Emotional Validation",
    ]
    details = [i.detail for i in extes_result.report.issues if i.record == 1]
    assert any("'Validation'" in d for d in details)
    assert extes_result.report.counts["strategy_variant"] == 3
    assert extes_result.report.counts["strategy_unknown"] == 1
    assert extes_result.report.counts["strategy_null"] == 1
    assert all(s is None or s in EXTES_STRATEGIES for s in strategies)


def test_extes_both_roles_neither_role_and_unknown_keys(extes_result) -> None:
    work = extes_result.dialogues[2]
    assert [(t.role, t.strategy) for t in work.turns] == [
        ("user", None),
        ("assistant", "Clarification"),
        ("user", None),
        ("assistant", "Stress Management"),
    ]
    assert work.turns[0].text == "Work has been exhausting lately."
    assert {"turn_both_roles", "turn_no_role", "turn_unknown_keys"} <= _issues(
        extes_result.report, 2
    )


def test_extes_ai_response_dicts_and_opening_ai(extes_result) -> None:
    anxiety = extes_result.dialogues[3]
    assert anxiety.turns[0].role == "assistant"
    assert anxiety.turns[0].text == "Hello, how are you feeling today?"
    assert anxiety.turns[2].strategy == "Share Information"  # label inside the dict
    assert {"ai_response_dict", "opens_with_assistant"} <= _issues(extes_result.report, 3)
    assert extes_result.report.counts["ai_response_dict"] == 2


def test_extes_missing_scene_description_and_same_speaker_runs(extes_result) -> None:
    no_keys, blank = extes_result.dialogues[4], extes_result.dialogues[5]
    assert (no_keys.scene, no_keys.description) == (None, None)
    assert (blank.scene, blank.description) == (None, None)
    assert [t.role for t in blank.turns] == ["user"] * 3 + ["assistant"] * 2 + ["user", "assistant"]
    assert blank.turns[5].text == "Maybe a running club."
    assert extes_result.report.counts["same_speaker_run"] == 3  # not counted in rejected records
    assert {"scene_missing", "description_missing", "text_whitespace"} <= _issues(
        extes_result.report, 5
    )


def test_extes_unusable_texts_are_dropped_and_counted(extes_result) -> None:
    career = extes_result.dialogues[6]
    assert [t.text for t in career.turns] == [
        "I just quit my job to change careers.",
        "That took courage. How are you feeling about it?",
    ]
    assert {"text_not_string", "text_empty", "turn_not_object"} <= _issues(extes_result.report, 6)


def test_merge_consecutive_joins_runs() -> None:
    result = load_extes(EXTES_IRREGULAR, merge_consecutive=True)
    blank = result.dialogues[5]
    assert [t.role for t in blank.turns] == ["user", "assistant", "user", "assistant"]
    assert blank.turns[0].text == (
        "I moved to a new city and feel alone. I don't know anyone here. Weekends are the worst."
    )
    assert blank.turns[1].strategy == "Normalize Experiences"
    assert result.report.counts["merged_same_speaker"] == 3
    assert result.report.counts["same_speaker_run"] == 0


def test_summary_lines_name_every_reason(extes_result) -> None:
    text = "\n".join(extes_result.report.summary_lines())
    assert "12 records, 7 loaded, 5 rejected" in text
    for reason in extes_result.report.counts:
        assert reason in text
    as_dict = extes_result.report.to_dict()
    assert json.loads(json.dumps(as_dict))["rejected"] == 5


# --- ESConv formats ---------------------------------------------------------------------


def test_esconv_hf_split_jsonl() -> None:
    result = load_path(FIXTURES / "esconv_hf_split.json")
    assert [d.source for d in result.dialogues] == ["esconv"] * 3
    job = result.dialogues[0]
    assert job.id == "esconv:esconv_hf_split:0"
    assert job.scene == "job crisis"
    assert job.description.startswith("HAND-WRITTEN FIXTURE")
    assert job.meta["emotion_type"] == "anxiety"
    # Consecutive same-speaker utterances are kept as they are.
    assert [t.role for t in job.turns][:4] == ["assistant", "user", "user", "user"]
    used = {t.strategy for d in result.dialogues for t in d.turns if t.role == "assistant"}
    assert used == set(ESCONV_STRATEGIES)


def test_esconv_raw_schema_keeps_feedback() -> None:
    result = load_esconv(FIXTURES / "esconv_raw.json")
    (dialogue,) = result.dialogues
    assert dialogue.turns[0] == dialogue.turns[0].__class__("user", "I have felt low for weeks.")
    assert dialogue.turns[1].strategy == "Question"
    assert dialogue.meta["feedback"] == {2: "4", 4: "5"}
    assert result.report.counts["text_whitespace"] == 2


def test_failed_esconv_variants_and_unknown_speaker() -> None:
    result = load_esconv(FIXTURES / "esconv_failed_style.json")
    (dialogue,) = result.dialogues
    strategies = [t.strategy for t in dialogue.turns if t.role == "assistant"]
    assert strategies == [
        "Question",
        "Others",
        "Restatement or Paraphrasing",
        "Providing Suggestions",
        "Affirmation and Reassurance",
    ]
    assert dialogue.turns[-1] == dialogue.turns[-1].__class__("user", "Okay.")
    counts = result.report.counts
    assert counts["strategy_variant"] == 5
    assert counts["speaker_unknown"] == 1
    assert counts["strategy_on_user_turn"] == 1


def test_split_directory_and_gzip(tmp_path: Path) -> None:
    split_dir = tmp_path / "hf_split"
    split_dir.mkdir()
    text = (FIXTURES / "esconv_hf_split.json").read_text(encoding="utf-8")
    (split_dir / "train.json").write_text(text, encoding="utf-8")
    (split_dir / "test.json").write_text(text.splitlines()[0], encoding="utf-8")
    combined = load_path(split_dir)
    assert len(combined) == 4
    assert combined.dialogues[-1].id == "esconv:test:0"
    assert {i.source for i in combined.report.issues} == {
        str(split_dir / "train.json"),
        str(split_dir / "test.json"),
    }
    gz = tmp_path / "ExTES.json.gz"
    gz.write_bytes(gzip.compress(EXTES_IRREGULAR.read_bytes()))
    assert [d.turns for d in load_path(gz).dialogues] == [
        d.turns for d in load_path(EXTES_IRREGULAR).dialogues
    ]


# --- malformed files --------------------------------------------------------------------


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_truncated_array_names_file_and_record(tmp_path: Path) -> None:
    data = EXTES_IRREGULAR.read_bytes()
    cut = data.index(b'"scene": "Work-related')  # inside record 2
    path = _write(tmp_path, "cut.json", data[:cut])
    with pytest.raises(DatasetError) as info:
        load_extes(path)
    assert info.value.record == 2
    assert str(path) in str(info.value)
    assert "truncated" in str(info.value)


def test_unclosed_array_names_the_next_record(tmp_path: Path) -> None:
    path = _write(tmp_path, "open.json", b'[{"content": []},\n')
    with pytest.raises(DatasetError, match=r"record 1: truncated"):
        load_path(path)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'"just a string"', "wrong top-level type"),
        (b"42", "wrong top-level type"),
        (b"", "empty"),
        (b'{"data": [1, 2]}', "not a dialogue data set"),
        (b"[1, 2, 3]", "not a dialogue data set"),
        (b'[{"content": []}] trailing', "extra data"),
    ],
)
def test_wrong_top_level_types(tmp_path: Path, payload: bytes, expected: str) -> None:
    path = _write(tmp_path, "bad.json", payload)
    with pytest.raises(DatasetError, match=expected) as info:
        load_path(path)
    assert str(path) in str(info.value)


def test_non_utf8_bytes_name_the_record(tmp_path: Path) -> None:
    records = json.loads(EXTES_IRREGULAR.read_text(encoding="utf-8"))[:3]
    data = json.dumps(records, indent=1).encode("utf-8")
    at = data.index(b"Work has been exhausting")  # inside record 2
    path = _write(tmp_path, "latin1.json", data[:at] + b"\xe9t\xe9 " + data[at:])
    with pytest.raises(DatasetError) as info:
        load_extes(path)
    assert info.value.record == 2
    assert "not UTF-8" in info.value.reason and "0xe9" in info.value.reason


def test_bad_jsonl_line_names_the_record(tmp_path: Path) -> None:
    lines = (FIXTURES / "esconv_hf_split.json").read_text(encoding="utf-8").splitlines()
    path = _write(tmp_path, "train.json", "\n".join([lines[0], lines[1][:40]]).encode())
    with pytest.raises(DatasetError, match=r"record 1: truncated or malformed JSON Lines record"):
        load_esconv(path)


def test_missing_file_and_unknown_spec(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read"):
        load_esconv(tmp_path / "nope.json")
    with pytest.raises(DatasetError, match="not a known spec"):
        load_spec("nosuchdataset:train")
    with pytest.raises(DatasetError, match="unknown ESConv split"):
        load_spec("esconv:dev")


def test_data_dir_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOLACE_DATA_DIR", raising=False)
    with pytest.raises(DatasetError, match="SOLACE_DATA_DIR"):
        data_dir()
    with pytest.raises(DatasetError, match="not set"):
        load_spec("esconv:train")


def test_path_spec_with_split() -> None:
    train = load_spec(f"{EXTES_IRREGULAR}:train")
    test = load_spec(f"{EXTES_IRREGULAR}:test")
    assert len(train) + len(test) == 7
    assert not {d.id for d in train.dialogues} & {d.id for d in test.dialogues}


# --- real data ----------------------------------------------------------------------------


@pytest.mark.data
def test_real_esconv_all(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLACE_DATA_DIR", str(data_dir))
    result = load_spec("esconv:all")
    assert len(result.dialogues) == 1300
    assert sum(d.num_turns for d in result.dialogues) == 38365
    assert result.report.rejected == 0
    assert result.report.by_action("dropped") == {}
    assert len({d.id for d in result.dialogues}) == 1300
    strategies = {t.strategy for d in result.dialogues for t in d.turns if t.role == "assistant"}
    assert strategies == set(ESCONV_STRATEGIES)
    assert [len(load_spec(f"esconv:{s}")) for s in ("train", "valid", "test")] == [910, 195, 195]
    merged = load_spec("esconv:all", merge_consecutive=True)
    assert sum(d.num_turns for d in merged.dialogues) == 30392


@pytest.mark.data
def test_real_failed_esconv(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLACE_DATA_DIR", str(data_dir))
    result = load_spec("esconv:failed")
    assert len(result) == 196
    assert result.report.counts["strategy_unknown"] == 0
    assert result.report.counts["strategy_variant"] == 520 + 400 + 11 + 7 + 3


@pytest.mark.data
def test_real_extes_fragment(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = load_extes(data_dir / "extes" / "ExTES_recovered.json")
    assert len(result.dialogues) == 11
    assert result.dialogues[0].scene == "Communication Challenges"
    assert sum(d.num_turns for d in result.dialogues) == 253
    monkeypatch.setenv("SOLACE_DATA_DIR", str(data_dir))
    if not (data_dir / "extes" / "ExTES.json").exists():
        fallback = load_spec("extes")
        assert len(fallback) == 11
        assert any("ExTES_recovered.json" in w for w in fallback.report.warnings)
