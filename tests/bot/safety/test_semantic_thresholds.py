"""Choosing the semantic layer's thresholds on a pool of sources, and keeping evaluation cases
(and their near-repeats) out of training (issue 17)."""

from __future__ import annotations

from pathlib import Path

from bot.safety.semantic import SemanticScore
from bot.safety.semantic_data import near_repeat_keys, near_repeats
from bot.safety.semantic_thresholds import Source, cross_source, figures, select


def source(name: str, controls: list[float], crises: list[float], rule_fp: int = 0) -> Source:
    """Controls and explicit crisis cases with the given P(crisis); the first `rule_fp` controls
    are already said crisis by the rules."""
    n = len(controls)
    return Source(
        name=name,
        tiers=("control",) * n + ("explicit",) * len(crises),
        labels=("none",) * n + ("crisis",) * len(crises),
        rules=("crisis",) * rule_fp + ("none",) * (n - rule_fp) + ("none",) * len(crises),
        scores=tuple(SemanticScore(p, 0.0, "suicide") for p in [*controls, *crises]),
    )


def test_the_worst_source_decides_not_the_pooled_rate() -> None:
    # A: 100 controls, none above 0.3. B: 50 controls, 3 of them (0.06) at 0.7.
    a = source("a", [0.1] * 100, [0.8] * 10)
    b = source("b", [0.7] * 3 + [0.1] * 47, [0.8] * 10)
    # Pooled, threshold 0.5 adds 3/150 = 0.02 (within 0.03); on B alone it adds 0.06.
    t = select([a, b])["crisis"]
    assert 0.7 < t <= 0.8
    assert figures(b, t, 2.0)["fpr_control"] == 0.0 and figures(b, t, 2.0)["recall_explicit"] == 1.0
    assert select([a])["crisis"] <= 0.11  # chosen on A alone it would be far lower


def test_the_budget_is_added_over_the_rules() -> None:
    # The rules already say crisis for 10% of the controls: that does not close the layer off.
    a = source("a", [0.1] * 100, [0.6] * 10, rule_fp=10)
    assert select([a])["crisis"] <= 0.11
    assert figures(a, 0.11, 2.0)["rules_fpr_control"] == 0.1


def test_cross_source_reports_thresholds_chosen_elsewhere() -> None:
    a = source("a", [0.1] * 100, [0.8] * 10)
    b = source("b", [0.7] * 3 + [0.1] * 47, [0.8] * 10)
    report = cross_source([a, b])
    assert report["b"]["chosen_on_others"]["fpr_control"] == 0.06  # A's threshold, on B
    assert report["b"]["chosen_on_itself"]["fpr_control"] == 0.0


def test_near_repeats_catch_small_rewordings_only() -> None:
    cases = ["I'm going to kill myself tonight.", "my feet are killing me after that hike"]
    texts = [
        "i am going to kill myself tonight",  # a contraction spelled out
        "I'M GOING TO KILL MYSELF TONIGHT!!",  # the same after normalising
        "my feet are killing me after that hikee",  # a typo
        "I wrote letters to everyone and gave the dog away",
        "nice weather today",
    ]
    assert near_repeats(texts, cases) == [0, 1, 2]


def test_near_repeat_keys_name_the_training_rows_to_leave_out(tmp_path: Path) -> None:
    (tmp_path / "suicide.jsonl").write_text(
        '{"text": "i am going to kill myself tonight", "level": "crisis"}\n'
        '{"text": "the dog has a new home now, so do my plants", "level": "crisis"}\n'
    )
    (tmp_path / "esconv_labels.jsonl").write_text("")
    keys = near_repeat_keys(tmp_path, {"i m going to kill myself tonight"})
    assert keys == {"i am going to kill myself tonight"}


# The refusal of a current held-out set (v4) is tested in test_semantic_data.py.


def test_esconv_seeker_turns_have_their_own_flag_rate_budget() -> None:
    a = source("a", [0.1] * 100, [0.8] * 10)
    # 1,000 ordinary seeker turns, 10 of them (1%) at 0.7: over the 0.25% crisis budget
    esconv = Source(
        name="esconv",
        tiers=("esconv",) * 1000,
        labels=("none",) * 1000,
        rules=("none",) * 1000,
        scores=tuple(SemanticScore(0.7 if i < 10 else 0.1, 0.0, "suicide") for i in range(1000)),
    )
    assert select([a])["crisis"] <= 0.11
    t = select([a, esconv])["crisis"]
    assert 0.7 < t <= 0.8
    assert figures(esconv, t, 2.0)["fpr_esconv"] == 0.0
