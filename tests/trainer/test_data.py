"""Trainer data preparation: assistant-only labels token by token, windows, conditioning."""

from __future__ import annotations

import pytest

from dialogue.types import Dialogue, Turn
from tests.trainer.helpers import make_dialogues, make_tokenizer
from trainer.batches import build_samples
from trainer.config import TrainConfig
from trainer.data import IGNORE_INDEX, DataError, conversation_turns

pytest.importorskip("transformers")


def _cfg(**overrides: object) -> TrainConfig:
    values: dict[str, object] = {
        "name": "t",
        "base_model": "unused",
        "max_seq_len": 256,
        "history_tokens": 32,
        "use_system_prompt": False,
    }
    values.update(overrides)
    return TrainConfig.model_validate(values)


def _expected_labels(tokens: list[str]) -> list[bool]:
    """Independent oracle: inside an assistant message (after '<|im_start|> assistant') up to
    and including its '<|im_end|>'."""
    out, inside = [], False
    for i, tok in enumerate(tokens):
        if inside:
            out.append(True)
            inside = tok != "<|im_end|>"
            continue
        out.append(False)
        if tok == "assistant" and i > 0 and tokens[i - 1] == "<|im_start|>":
            inside = True
    return out


def test_labels_are_exactly_the_assistant_turns() -> None:
    tok = make_tokenizer()
    samples, stats = build_samples(make_dialogues(3), tok, _cfg())
    assert stats.samples == len(samples) > 0
    for sample in samples:
        tokens = tok.convert_ids_to_tokens(sample.input_ids)
        expected = _expected_labels(tokens)
        for tok_id, label, want, token in zip(
            sample.input_ids, sample.labels, expected, tokens, strict=True
        ):
            assert (label == tok_id) if want else (label == IGNORE_INDEX), token
    # every assistant reply of every dialogue is a target exactly once
    replies = sum(
        1 for d in make_dialogues(3) for t in conversation_turns(d) if t.role == "assistant"
    )
    assert stats.target_turns == replies


def test_long_dialogue_is_windowed_without_cutting_turns() -> None:
    tok = make_tokenizer()
    dialogue = make_dialogues(1, exchanges=30)[0]
    cfg = _cfg(max_seq_len=96, history_tokens=24)
    samples, stats = build_samples([dialogue], tok, cfg)
    assert len(samples) > 3
    assert all(len(s.input_ids) <= 96 for s in samples)
    assert stats.target_turns == 30
    for sample in samples:
        tokens = tok.convert_ids_to_tokens(sample.input_ids)
        assert tokens[0] == "<|im_start|>" and tokens[-1] == "<|im_end|>"
        assert tokens.count("<|im_start|>") == tokens.count("<|im_end|>")
    # later windows carry earlier turns as (untargeted) context
    assert stats.context_turns > 0
    assert samples[1].labels[0] == IGNORE_INDEX


def test_strategy_prefix_is_in_targets_only() -> None:
    tok = make_tokenizer()
    samples, _ = build_samples(make_dialogues(1), tok, _cfg(strategy_conditioning="prefix"))
    targets = tok.decode([x for x in samples[0].labels if x != IGNORE_INDEX])
    assert targets.startswith("[ question ]")
    plain, _ = build_samples(make_dialogues(1), tok, _cfg())
    assert "[" not in tok.decode(plain[0].input_ids)


def test_context_representation_applies_to_context_turns_only() -> None:
    pytest.importorskip("spacy")
    from dialogue.context import NLTK_ENGLISH_STOPWORDS

    tok = make_tokenizer()
    dialogue = make_dialogues(1, exchanges=12)[0]
    cfg = _cfg(max_seq_len=96, history_tokens=40, context_representation="nostopwords")
    samples, stats = build_samples([dialogue], tok, cfg)
    assert stats.context_turns > 0
    later = tok.convert_ids_to_tokens(samples[1].input_ids)
    first_target = next(i for i, x in enumerate(samples[1].labels) if x != IGNORE_INDEX)
    # the block starts with the (raw) user turn that precedes the first target
    block_start = max(i for i in range(first_target - 2) if later[i] == "<|im_start|>")
    context_part, block_part = later[:block_start], later[block_start:]
    stop = NLTK_ENGLISH_STOPWORDS
    assert context_part and not [t for t in context_part if t in stop]  # earlier turns compressed
    assert [t for t in block_part if t in stop]  # target turns and their user turns stay raw


def test_sequence_shorter_than_one_turn_is_a_clear_error() -> None:
    tok = make_tokenizer()
    long_turn = Dialogue(
        "x",
        "t",
        None,
        None,
        (
            Turn("user", "word " * 200),
            Turn("assistant", "reply " * 200),
        ),
    )
    with pytest.raises(DataError, match="max_seq_len"):
        build_samples([long_turn], tok, _cfg(max_seq_len=64, history_tokens=0))


def test_merging_and_leading_assistant_turns() -> None:
    dialogue = Dialogue(
        "x",
        "t",
        None,
        None,
        (
            Turn("assistant", "hello", "Question"),
            Turn("user", "a"),
            Turn("user", "b"),
            Turn("assistant", "c", None),
            Turn("assistant", "d", "Others"),
            Turn("user", "dangling"),
        ),
    )
    turns = conversation_turns(dialogue)
    assert [(t.role, t.text, t.strategy) for t in turns] == [
        ("user", "a\nb", None),
        ("assistant", "c\nd", "Others"),
    ]


def test_epoch_batches_cover_every_sample_once_and_are_seeded() -> None:
    from trainer.batches import epoch_batches
    from trainer.data import Sample

    samples = [Sample([1] * (i % 37 + 1), [1] * (i % 37 + 1)) for i in range(203)]
    first = epoch_batches(samples, 4, seed=7, epoch=0)
    assert sorted(i for b in first for i in b) == list(range(203))
    assert first == epoch_batches(samples, 4, seed=7, epoch=0)
    assert first != epoch_batches(samples, 4, seed=7, epoch=1)
    # length grouping: far less padding than a random order would give
    padded = sum(max(len(samples[i].input_ids) for i in b) * len(b) for b in first)
    assert padded < 1.15 * sum(len(s.input_ids) for s in samples)
