"""Scene-stratified splits: reproducible, order-independent, stratified, rare classes handled."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from dialogue.datasets import load_esconv, load_spec
from dialogue.splits import stratified_split
from dialogue.types import Dialogue, Turn
from tests.paths import FIXTURES

TURNS = (Turn("user", "hello"), Turn("assistant", "hi", "Others"))


def _dialogues(scene_counts: dict[str | None, int]) -> list[Dialogue]:
    out = []
    for scene, count in scene_counts.items():
        for i in range(count):
            out.append(Dialogue(f"t:{scene}:{i:03d}", "test", scene, None, TURNS))
    return out


def test_split_is_80_20_and_stratified() -> None:
    dialogues = _dialogues({"a": 50, "b": 30, "c": 20})
    train, test = stratified_split(dialogues)
    assert (len(train), len(test)) == (80, 20)
    assert Counter(d.scene for d in test) == {"a": 10, "b": 6, "c": 4}
    assert not {d.id for d in train} & {d.id for d in test}


def test_split_is_reproducible_and_order_independent() -> None:
    dialogues = _dialogues({"a": 40, "b": 25, "c": 9})
    first = stratified_split(dialogues, seed=7)
    shuffled = dialogues[:]
    random.Random(3).shuffle(shuffled)
    second = stratified_split(shuffled, seed=7)
    assert {d.id for d in first[1]} == {d.id for d in second[1]}
    # Each side keeps the caller's order.
    order = {d.id: i for i, d in enumerate(shuffled)}
    assert [order[d.id] for d in second[0]] == sorted(order[d.id] for d in second[0])
    other_seed = stratified_split(dialogues, seed=8)
    assert {d.id for d in other_seed[1]} != {d.id for d in first[1]}


def test_single_member_classes_are_pooled_or_go_to_train() -> None:
    dialogues = _dialogues({"big": 20, "lonely": 1, "solo": 1, None: 5})
    train, test = stratified_split(dialogues)
    assert len(train) + len(test) == 27
    assert len(test) == 6  # ceil(0.2 * 27)
    # The two single-member scenes were pooled into one class of 2, which can be stratified.
    lone = _dialogues({"big": 20, "lonely": 1})
    train, test = stratified_split(lone)
    assert "t:lonely:000" in {d.id for d in train}


def test_tiny_sets_fall_back_to_an_unstratified_split() -> None:
    dialogues = _dialogues({"a": 2, "b": 2, "c": 2, "d": 2})  # 2 test slots < 4 classes
    train, test = stratified_split(dialogues)
    assert (len(train), len(test)) == (6, 2)
    assert stratified_split(_dialogues({"a": 1})) == (_dialogues({"a": 1}), [])


def test_bad_arguments() -> None:
    dialogues = _dialogues({"a": 3})
    with pytest.raises(ValueError, match="unique"):
        stratified_split(dialogues + dialogues[:1])
    with pytest.raises(ValueError, match="test_size"):
        stratified_split(dialogues, test_size=1.5)


def test_stable_when_the_file_is_re_read() -> None:
    path = FIXTURES / "esconv_hf_split.json"
    runs = [stratified_split(load_esconv(path).dialogues) for _ in range(2)]
    assert [[d.id for d in side] for side in runs[0]] == [[d.id for d in side] for side in runs[1]]


@pytest.mark.data
def test_real_esconv_split_keeps_problem_types(data_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("SOLACE_DATA_DIR", str(data_dir))
    dialogues = load_spec("esconv:all").dialogues
    train, test = stratified_split(dialogues)
    assert (len(train), len(test)) == (1040, 260)
    every = Counter(d.scene for d in dialogues)
    in_test = Counter(d.scene for d in test)
    for scene, count in every.items():
        if count >= 10:  # every well-populated problem type keeps its share, +-1 dialogue
            assert abs(in_test[scene] - 0.2 * count) <= 1, scene
    assert every["School Bullying"] == 2
    again = stratified_split(load_spec("esconv:all").dialogues)
    assert [d.id for d in again[1]] == [d.id for d in test]
