"""Strategy taxonomies and label normalisation."""

from __future__ import annotations

import pytest

from dialogue.strategies import (
    ESCONV_STRATEGIES,
    EXTES_ABBREVIATIONS,
    EXTES_STRATEGIES,
    classify_strategy,
    normalize_strategy,
    strategies_for,
)


def test_taxonomy_sizes_and_definitions() -> None:
    assert len(EXTES_STRATEGIES) == 16
    assert len(ESCONV_STRATEGIES) == 8
    for definitions in (EXTES_STRATEGIES, ESCONV_STRATEGIES):
        assert all(text.strip().endswith(".") for text in definitions.values())
    assert set(EXTES_ABBREVIATIONS.values()) == set(EXTES_STRATEGIES)


@pytest.mark.parametrize("name", list(EXTES_STRATEGIES))
def test_extes_canonical_names_map_to_themselves(name: str) -> None:
    assert classify_strategy(name, "extes") == (name, "canonical")
    assert normalize_strategy(name.upper(), "extes") == name


@pytest.mark.parametrize("name", list(ESCONV_STRATEGIES))
def test_esconv_canonical_names_map_to_themselves(name: str) -> None:
    assert classify_strategy(name, "esconv") == (name, "canonical")


@pytest.mark.parametrize(
    ("label", "taxonomy", "expected"),
    [
        ("Avoid Judgment And Criticism", "extes", "Avoid Judgment and Criticism"),
        ("avoid judgement & criticism", "extes", "Avoid Judgment and Criticism"),
        ("Emotional Validation (EV)", "extes", "Emotional Validation"),
        ("reflective statement", "extes", "Reflective Statements"),
        ("Promote Self Care Practices", "extes", "Promote Self-Care Practices"),
        ("PDP", "extes", "Provide Different Perspectives"),
        ("Other", "extes", "Others"),
        ("Questions", "esconv", "Question"),
        ("Other", "esconv", "Others"),
        ("Restatement", "esconv", "Restatement or Paraphrasing"),
        ("Direct Guidance", "esconv", "Providing Suggestions"),
        ("Approval and Reassurance", "esconv", "Affirmation and Reassurance"),
        ("self disclosure", "esconv", "Self-disclosure"),
    ],
)
def test_variants_seen_in_the_data(label: str, taxonomy: str, expected: str) -> None:
    assert classify_strategy(label, taxonomy) == (expected, "variant")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("label", "outcome"),
    [(None, "empty"), ("", "empty"), ("   ", "empty"), ("Validation", "unknown"), (3, "unknown")],
)
def test_empty_and_unknown_labels(label: object, outcome: str) -> None:
    assert classify_strategy(label, "extes") == (None, outcome)
    assert normalize_strategy(label, "extes") is None


def test_taxonomies_do_not_leak_into_each_other() -> None:
    assert normalize_strategy("Suggest Options", "esconv") is None
    assert normalize_strategy("Self-disclosure", "extes") is None
    with pytest.raises(ValueError, match="unknown strategy taxonomy"):
        strategies_for("other")  # type: ignore[arg-type]
