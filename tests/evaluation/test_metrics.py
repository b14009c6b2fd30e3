"""Metrics against their reference libraries (to 1e-6) and hand-computed toy cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from evaluation.config import MetricsConfig
from evaluation.embeddings import extrema_vector, load_glove, vector_extrema
from evaluation.metrics import (
    bleu,
    compute_metrics,
    distinct,
    lcs_length,
    meteor,
    meteor_entries,
    rouge_l,
    rouge_l_sentence,
    tokenize,
)
from evaluation.wordnet import DEBIAN_WORDNET_DIR, LEXNAMES, lexnames_text

HAVE_WORDNET = (DEBIAN_WORDNET_DIR / "data.noun").is_file()
needs_wordnet = pytest.mark.skipif(not HAVE_WORDNET, reason="Debian wordnet-base not installed")


def test_tokenize_is_lowercased_treebank() -> None:
    assert tokenize("I don't KNOW, really.") == ["i", "do", "n't", "know", ",", "really", "."]


def test_bleu_hand_computed() -> None:
    ref = tokenize("the cat sat on the mat")
    assert bleu([ref], [ref], 2) == pytest.approx(100.0)
    # hyp "the cat sat": p1 = 3/3, p2 = 2/2, brevity penalty exp(1 - 6/3).
    assert bleu([ref], [tokenize("the cat sat")], 2) == pytest.approx(100 * math.exp(-1), abs=1e-6)


def test_bleu_matches_esconv_weight_convention() -> None:
    """ESConv passes [1/k]*k + [0]*(4-k) weights; ours passes k weights: same score."""
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    refs = [tokenize(t) for t in ("i hear you , that sounds hard .", "what happened at work ?")]
    hyps = [tokenize(t) for t in ("that sounds really hard .", "what happened today ?")]
    for k in (2, 4):
        weights = [1.0 / k] * k + (4 - k) * [0.0]
        esconv = corpus_bleu([[r] for r in refs], hyps, weights=weights,
                             smoothing_function=SmoothingFunction().method3)  # fmt: skip
        assert bleu(refs, hyps, k) == pytest.approx(100 * esconv, abs=1e-6)


def test_lcs_and_rouge_l_hand_computed() -> None:
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4
    ref, hyp = tokenize("the cat sat on the mat"), tokenize("the cat sat")
    # P = 1, R = 0.5: F_1.2 = (1 + 1.44) * 0.5 / (0.5 + 1.44)
    assert rouge_l_sentence(ref, hyp) == pytest.approx(2.44 * 0.5 / 1.94, abs=1e-9)
    assert rouge_l_sentence(ref, ["dog"]) == 0.0
    assert rouge_l([ref, ref], [hyp, ref]) == pytest.approx(100 * (2.44 * 0.5 / 1.94 + 1) / 2)


def test_rouge_l_beta1_matches_rouge_score_library() -> None:
    from rouge_score.rouge_scorer import _score_lcs

    pairs = [
        ("it sounds like you feel alone since the move", "you feel alone after moving , right ?"),
        ("have you talked to your sister about it", "maybe talk to your sister"),
        ("that must be hard", "i am so sorry that must be really hard for you"),
    ]
    for ref, hyp in pairs:
        r, h = tokenize(ref), tokenize(hyp)
        assert rouge_l_sentence(r, h, beta=1.0) == pytest.approx(
            _score_lcs(r, h).fmeasure, abs=1e-6
        )


def test_distinct_hand_computed_and_esconv_variant() -> None:
    hyps = [["a", "b", "a", "b"]]
    assert distinct(hyps, 1) == pytest.approx(50.0)  # a, b of 4
    assert distinct(hyps, 2) == pytest.approx(100 * 2 / 3)  # ab, ba, ab
    # ESConv's loop range(len - n) drops each sentence's last n-gram.
    assert distinct(hyps, 1, esconv_variant=True) == pytest.approx(100 * 2 / 3)  # a, b, a
    assert distinct(hyps, 2, esconv_variant=True) == pytest.approx(100.0)  # ab, ba
    assert distinct([["x"]], 2) == 0.0


def test_distinct_esconv_variant_matches_esconv_loop() -> None:
    hyps = [tokenize(t) for t in ("i am here for you .", "i am sorry .", "tell me more")]
    for k in (1, 2, 3):
        d, tot = {}, 0
        for sen in hyps:  # transcribed from ESConv's calc_distinct_k
            for i in range(0, len(sen) - k):
                d[tuple(sen[i : i + k])] = 1
                tot += 1
        assert distinct(hyps, k, esconv_variant=True) == pytest.approx(100 * len(d) / tot, abs=1e-9)


def test_lexnames_has_45_fixed_entries() -> None:
    lines = lexnames_text().splitlines()
    assert len(lines) == len(LEXNAMES) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[-1] == "44\tadj.ppl\t3"


@pytest.fixture(scope="module")
def wordnet_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nltk_data")


@needs_wordnet
def test_meteor_with_debian_wordnet_matches_nltk(wordnet_cache: Path) -> None:
    from nltk.translate.meteor_score import meteor_score

    from evaluation.wordnet import load_wordnet

    tmp_path = wordnet_cache
    wn = load_wordnet(cache_dir=tmp_path)
    assert wn.synsets("happy") and (tmp_path / "corpora" / "wordnet" / "lexnames").is_file()
    refs = [tokenize("i feel so sad today"), tokenize("you can talk to me")]
    hyps = [tokenize("i feel very unhappy today"), tokenize("talk to me")]
    expected = 100 * np.mean(
        [meteor_score([r], h, wordnet=wn) for r, h in zip(refs, hyps, strict=False)]
    )
    assert meteor(refs, hyps, wn) == pytest.approx(expected, abs=1e-6)
    entries = meteor_entries(refs, hyps, MetricsConfig(cache_dir=str(tmp_path)))
    assert "WordNet 3.0" in entries["meteor"]["wordnet"]


def test_meteor_without_wordnet_refuses_or_is_named(tmp_path: Path) -> None:
    refs, hyps = [tokenize("i am happy")], [tokenize("i am happy")]
    empty = tmp_path / "no-wordnet"
    empty.mkdir()
    refused = meteor_entries(refs, hyps, MetricsConfig(wordnet_source=str(empty)))
    assert refused["meteor"]["value"] is None and "wordnet-base" in refused["meteor"]["error"]
    cfg = MetricsConfig(wordnet_source=str(empty), meteor_without_wordnet="exact_stem")
    variant = meteor_entries(refs, hyps, cfg)
    assert "meteor" not in variant
    assert "NO WordNet" in variant["meteor_exact_stem"]["label"]
    assert variant["meteor_exact_stem"]["value"] > 90


def _nlg_eval_extrema(vectors: list[np.ndarray]) -> np.ndarray:
    """ESConv/nlg-eval's extrema lambda, transcribed (valid when no minimum is exactly 0)."""
    mx, mn = np.max(vectors, axis=0), np.min(vectors, axis=0)
    pick = lambda x, y: x if ((x > y or x < -y) and y > 0) or ((x < y or x > -y) and y < 0) else y  # noqa: E731
    return np.array(list(map(pick, mx, mn)))


def test_vector_extrema_matches_reference_and_hand_case() -> None:
    rng = np.random.default_rng(0)
    table = {w: rng.normal(size=8) for w in ["i", "am", "here", "for", "you", "sad", "so", "very"]}
    refs = [["i", "am", "here"], ["so", "sad"]]
    hyps = [["i", "am", "for", "you"], ["very", "sad"]]
    for words in refs + hyps:
        vecs = [table[w] for w in words]
        assert np.allclose(extrema_vector(vecs), _nlg_eval_extrema(vecs), atol=1e-12)
    from sklearn.metrics.pairwise import cosine_similarity

    expected = np.mean([
        cosine_similarity([_nlg_eval_extrema([table[w] for w in r])],
                          [_nlg_eval_extrema([table[w] for w in h])])[0, 0]
        for r, h in zip(refs, hyps, strict=False)
    ])  # fmt: skip
    value, skipped = vector_extrema(refs, hyps, table.get)
    assert value == pytest.approx(expected, abs=1e-6) and skipped == 0
    # Hand case: extrema of (1, -3) and (2, 1) is (2, -3).
    assert extrema_vector([np.array([1.0, -3.0]), np.array([2.0, 1.0])]).tolist() == [2.0, -3.0]


def test_glove_loader_uses_mean_for_unknown_words(tmp_path: Path) -> None:
    path = tmp_path / "glove.txt"
    path.write_text("sad 1 0 0\nhappy 0 1 0\nthe 0 0 1\n")
    vec = load_glove(path, {"sad", "unknownword"})
    assert vec("sad").tolist() == [1.0, 0.0, 0.0]
    assert np.allclose(vec("unknownword"), [1 / 3, 1 / 3, 1 / 3])


@pytest.mark.slow
def test_bertscore_matches_library_and_names_model() -> None:
    from bert_score import score

    from evaluation.embeddings import MINILM_NAME, bertscore_entries, minilm_dir

    refs = ["that sounds really hard , i am sorry", "what happened next ?"]
    hyps = ["i am sorry , that sounds hard", "what happened next ?"]
    entries = bertscore_entries(refs, hyps, MetricsConfig())
    p, r, f = score(hyps, refs, model_type=str(minilm_dir()), num_layers=6, lang="en")
    assert entries["bertscore_f1"]["value"] == pytest.approx(100 * float(f.mean()), abs=1e-6)
    assert entries["bertscore_p"]["value"] == pytest.approx(100 * float(p.mean()), abs=1e-6)
    assert entries["bertscore_f1"]["model"] == MINILM_NAME and entries["bertscore_f1"]["layer"] == 6
    assert "roberta-large" in entries["bertscore_f1"]["note"]
    assert float(f[1]) == pytest.approx(1.0, abs=1e-5)  # the identical pair


@pytest.mark.slow
def test_bertscore_scores_an_empty_reply_zero_instead_of_crashing() -> None:
    """A strategy row whose reply is only a "[Question]" prefix has an empty reply after the
    split; bert-score 0.3.13 crashed on it under transformers 5 (results/compare's first run)."""
    from bert_score import score

    from evaluation.embeddings import bertscore_entries, minilm_dir

    refs = ["that sounds really hard , i am sorry", "what happened next ?", "tell me more"]
    hyps = ["i am sorry , that sounds hard", "", "   "]
    entries = bertscore_entries(refs, hyps, MetricsConfig())
    _p, _r, f = score(hyps[:1], refs[:1], model_type=str(minilm_dir()), num_layers=6, lang="en")
    assert entries["bertscore_f1"]["value"] == pytest.approx(100 * float(f[0]) / 3, abs=1e-6)
    assert entries["bertscore_f1"]["empty_pairs_scored_0"] == 2


def test_compute_metrics_records_provenance() -> None:
    rows = [
        {"dialogue_id": "d1", "reference": "I am sorry to hear that.", "generated": "That sounds hard.",
         "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "I lost my job"}]},
        {"dialogue_id": "d1", "reference": "What happened?", "generated": "What happened at work?",
         "messages": [{"role": "user", "content": "I lost my job"}, {"role": "assistant", "content": "Oh no"},
                      {"role": "user", "content": "yes"}]},
    ]  # fmt: skip
    cfg = MetricsConfig(skip=("bertscore", "meteor"), ppl=False)
    results = compute_metrics(rows, cfg)
    for key in ("bleu_2", "bleu_4", "rouge_l", "distinct_1", "extrema", "len_generated"):
        assert results[key]["implementation"], key
    assert results["bleu_2"]["tokenizer"].startswith("nltk TreebankWordTokenizer")
    assert "all-MiniLM-L6-v2" in results["extrema"]["embeddings"]
    assert results["len_context"]["utterances"] == 3  # the longest history of d1, system excluded
    with pytest.raises(ValueError, match="no usable generation rows"):
        compute_metrics([], cfg)
