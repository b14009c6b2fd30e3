"""The context window (dialogue.window): budget, whole turns newest first, the hybrid block boundary."""

from __future__ import annotations

from hypothesis import given, settings as hyp_settings, strategies as st

from dialogue.window import ContextTurn, build_context, prompt_cost, raw_window_start


def _turn(i: int, role: str, words: int, compressed_words: int | None) -> ContextTurn:
    text = " ".join([f"t{i}"] * words)
    comp = " ".join([f"c{i}"] * compressed_words) if compressed_words is not None else None
    return ContextTurn(role, text, words, comp, "keypos" if comp else None, compressed_words)


def _index(turn: ContextTurn) -> int:
    """The position `_turn` encoded in the text ("t3 t3 ..." is turn 3)."""
    return int(turn.text.split()[0][1:])


@hyp_settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(
        st.tuples(st.integers(1, 400), st.one_of(st.none(), st.integers(1, 50))), max_size=60
    ),
    current=st.integers(1, 300),
    budget=st.integers(64, 1500),
    representation=st.sampled_from(["raw", "keypos", "nostopwords", "hybrid"]),
    raw_recent=st.integers(0, 6),
    blocks=st.booleans(),
)
def test_context_never_exceeds_budget_and_keeps_whole_turns_newest_first(
    lengths, current, budget, representation, raw_recent, blocks
):
    history = [
        _turn(i, "user" if i % 2 == 0 else "assistant", w, c) for i, (w, c) in enumerate(lengths)
    ]
    built = build_context(
        history,
        "q " * current,
        current,
        system_prompt="s " * 20,
        system_tokens=20,
        budget_tokens=budget,
        representation=representation,
        raw_recent=raw_recent,
        blocks=blocks,
    )
    assert built.messages[-1]["content"] == "q " * current  # the current message, raw
    if not built.fits:
        assert len(built.messages) == 2  # system + current only
        return
    assert prompt_cost(built.messages, lambda t: len(t.split())) <= budget
    included = built.messages[1:-1]
    by_content = {t.text: (t, False) for t in history} | {
        t.compressed: (t, True) for t in history if t.compressed
    }
    picked = [by_content[m["content"]] for m in included]  # KeyError = a cut turn
    ids = [_index(t) for t, _ in picked]
    assert ids == sorted(ids)
    newest_first_rank = {_index(t): rank for rank, t in enumerate(reversed(history))}
    for turn, compressed in picked:
        if representation == "raw" or (
            representation == "hybrid" and newest_first_rank[_index(turn)] < raw_recent
        ):
            assert not compressed
    # Everything newer than the oldest included turn is included unless it alone was oversize.
    if ids:
        for turn in history[ids[0] :]:
            if _index(turn) not in ids:
                assert turn.tokens + 8 > budget // 2 or (
                    turn.compressed_tokens is not None and turn.compressed_tokens + 8 > budget // 2
                )
    assert built.report.turns_included == len(included)


def test_block_hybrid_keeps_the_prefix_stable_between_boundaries():
    """Compressing 2 * raw_recent turns at a time: the prompt prefix changes rarely."""
    history = [_turn(i, "user" if i % 2 == 0 else "assistant", 10, 3) for i in range(40)]

    def prompt(n: int) -> list[str]:
        built = build_context(
            history[:n],
            "now",
            1,
            system_prompt=None,
            system_tokens=0,
            budget_tokens=10_000,
            representation="hybrid",
            raw_recent=4,
            blocks=True,
        )
        return [m["content"] for m in built.messages[:-1]]

    stable = 0
    for n in range(8, 36, 2):  # a user turn and a reply per exchange
        raw = sum(1 for m, t in zip(prompt(n), history, strict=False) if m == t.text)
        assert 4 <= raw <= 11
        stable += prompt(n + 2)[:n] == prompt(n)  # the next prompt extends this one
    assert stable == 10  # the prefix changes on 1 exchange in 4
    assert raw_window_start(10, 4, blocks=False) == 6
    assert raw_window_start(10, 4, blocks=True) == 0
    assert raw_window_start(13, 4, blocks=True) == 8
    assert raw_window_start(3, 4, blocks=True) == 0
