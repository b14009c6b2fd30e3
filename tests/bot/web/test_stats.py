"""Human-evaluation statistics against hand-computed cases: Fleiss' κ, win/tie/loss, bootstrap
intervals, and how a rater's A/B choice maps back to the study's models."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bot.web import studies
from bot.web.auth import add_account
from bot.web.stats import (
    bootstrap_ci,
    fleiss_kappa,
    pairwise_table,
    rating_table,
    shares,
)
from bot.web.store import connection, migrate_web

# Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories.
# P-bar = 0.378, P_e = 0.213, kappa = 0.210.
WIKIPEDIA = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]  # fmt: skip


def test_fleiss_kappa_of_the_worked_example() -> None:
    assert fleiss_kappa(WIKIPEDIA) == pytest.approx(0.2099, abs=5e-4)


def test_fleiss_kappa_by_hand_two_raters() -> None:
    # Items rated (3, 3), (2, 3), (2, 2) on 0-3: P_i = 1, 0, 1 -> P-bar = 2/3;
    # p_2 = p_3 = 3/6 -> P_e = 1/2; kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3.
    table = [[0, 0, 0, 2], [0, 0, 1, 1], [0, 0, 2, 0]]
    assert fleiss_kappa(table) == pytest.approx(1 / 3)


def test_fleiss_kappa_by_hand_with_unequal_raters() -> None:
    # (2, 2, 2) -> P = 1; (0, 1) -> P = 0; a single rating is ignored.
    # p = (1, 1, 3) / 5 -> P_e = 11/25; kappa = (1/2 - 11/25) / (14/25) = 3/28.
    table = [[0, 0, 3, 0], [1, 1, 0, 0], [0, 0, 0, 1]]
    assert fleiss_kappa(table) == pytest.approx(3 / 28)


def test_fleiss_kappa_edges() -> None:
    assert fleiss_kappa([[2, 0], [0, 2], [2, 0]]) == pytest.approx(1.0)  # perfect agreement
    assert fleiss_kappa([[0, 3, 0], [0, 3, 0]]) is None  # one category only: undefined
    assert fleiss_kappa([[1, 0], [0, 1]]) is None  # no item has two ratings
    # Systematic disagreement is below chance: (1, 1) on every item -> P-bar 0, P_e 1/2.
    assert fleiss_kappa([[1, 1], [1, 1]]) == pytest.approx(-1.0)


def test_shares_and_bootstrap_by_hand() -> None:
    outcomes = ["win", "win", "tie", "loss"]
    assert shares(outcomes) == {"win": 50.0, "tie": 25.0, "loss": 25.0}
    ci = bootstrap_ci(outcomes)
    for name, point in shares(outcomes).items():
        lo, hi = ci[name]
        assert 0.0 <= lo <= point <= hi <= 100.0
    assert ci == bootstrap_ci(outcomes)  # fixed seed: the same intervals every time
    assert bootstrap_ci(["win"] * 7) == {"win": (100.0, 100.0), "tie": (0.0, 0.0),
                                         "loss": (0.0, 0.0)}  # fmt: skip
    # More sessions, narrower intervals.
    wide = bootstrap_ci(outcomes)["win"]
    narrow = bootstrap_ci(outcomes * 50)["win"]
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert shares([]) == {"win": 0.0, "tie": 0.0, "loss": 0.0}


def test_bootstrap_interval_matches_the_binomial_quantiles() -> None:
    """Resampling n sessions with replacement makes the win count Binomial(n, share), so the
    percentile interval is that distribution's 2.5% and 97.5% quantiles. By hand for 5 wins
    in 10: P(X <= 1) = 11/1024 = 0.011 < 0.025 < P(X <= 2) = 56/1024 = 0.055, and
    P(X <= 7) = 968/1024 = 0.945 < 0.975 < P(X <= 8) = 1013/1024 = 0.989: 20% to 80%. (With
    2,000 resamples the sampling error of those tail shares is about 0.003, far from the
    boundaries.) Ties and losses come from the same resamples: 0 ties -> (0, 0)."""
    ci = bootstrap_ci(["win"] * 5 + ["loss"] * 5)
    assert ci["win"] == (20.0, 80.0) and ci["loss"] == (20.0, 80.0)
    assert ci["tie"] == (0.0, 0.0)
    # Two sessions, one win: the resampled share is 0, 50 or 100 with odds 1:2:1.
    assert bootstrap_ci(["win", "tie"])["win"] == (0.0, 100.0)


def test_pairwise_table_by_hand() -> None:
    answers = [
        (0, 1, "fluency", "win"), (0, 1, "fluency", "tie"), (0, 1, "fluency", "loss"),
        (0, 1, "fluency", "win"), (0, 2, "fluency", "loss"), (1, 2, "overall", "win"),
        (2, 0, "fluency", "win"),  # from model 2's side: a loss for model 0
    ]  # fmt: skip
    table = pairwise_table(answers, ["M", "N", "O"])
    assert [p["label"] for p in table["pairs"]] == ["M vs N", "M vs O", "N vs O"]
    mn, mo, no = table["cells"]["fluency"]
    assert (mn["n"], mn["win"], mn["tie"], mn["loss"]) == (4, 50.0, 25.0, 25.0)
    assert (mo["n"], mo["loss"]) == (2, 100.0)
    assert no["n"] == 0 and table["cells"]["overall"][2]["win"] == 100.0


def test_rating_table_by_hand() -> None:
    ratings = [
        (1, "extes", "coherence", 3), (1, "extes", "coherence", 3),
        (2, "extes", "coherence", 2), (2, "extes", "coherence", 3),
        (3, "seed", "coherence", 2), (3, "seed", "coherence", 2),
    ]  # fmt: skip
    table = rating_table(ratings, ["extes", "seed"])["coherence"]
    assert table["sources"]["extes"]["mean"] == pytest.approx(11 / 4)
    assert table["sources"]["seed"]["mean"] == 2.0
    assert table["kappa"] == pytest.approx(1 / 3)  # the two-rater case above
    assert table["items"] == 3


def test_a_raters_choice_maps_back_to_the_models(tmp_path: Path) -> None:
    """The rater saw model 1 as "A" and model 0 as "B"; "A is more fluent" is a loss for
    model 0 in the table (stored from the lower model index's side)."""
    db = tmp_path / "s.db"
    migrate_web(db)
    with connection(db) as conn:
        admin = add_account(conn, "ada", "admin", "a long password!", 0.0)
        rater = add_account(conn, "rita", "rater", "a long password!", 0.0)
        studies.create_interactive(
            conn, "ab", "A/B", [{"name": "M0", "backend": "echo"}, {"name": "M1",
                                "backend": "echo"}], ["grief"], 1, admin, 0.0)  # fmt: skip
        study = studies.get_study(conn, "ab")
        assert study is not None
        sid = studies.start_session(conn, study, rater, 1.0, random.Random(0))
        conn.execute("UPDATE web_eval_sessions SET model_order = ?, position = 2 WHERE id = ?",
                     [json.dumps([1, 0]), sid])  # fmt: skip
        session = studies.session_row(conn, sid, rater)
        choices = {f"AB:{a}": "tie" for a in ("identification", "comforting", "suggestion",
                                             "overall")}  # fmt: skip
        choices["AB:fluency"] = "A"
        studies.save_answers(conn, session, choices, 2.0)
        rows = conn.execute("SELECT model_a, model_b, aspect, outcome FROM web_eval_answers "
                            "WHERE aspect = 'fluency'").fetchall()  # fmt: skip
        assert [tuple(r) for r in rows] == [(0, 1, "fluency", "loss")]
        with pytest.raises(studies.StudyError):  # unanswered questions are refused
            studies.save_answers(conn, session, {"AB:fluency": "A"}, 3.0)
