"""Reference-based metrics as the ESConv/ExTES papers compute them.

Text is lower-cased and split with NLTK's `TreebankWordTokenizer` (the ESConv reference code
uses `nltk.word_tokenize`, which is Treebank after punkt sentence splitting; punkt data is not
installable offline, so single-sentence Treebank is the closest faithful choice). Scores are
corpus-level unless their entry says otherwise, and every entry records its implementation,
model and tokenizer. Embedding metrics live in `evaluation.embeddings`, perplexity in
`evaluation.ppl`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from evaluation.config import MetricsConfig

logger = logging.getLogger(__name__)

TOKENIZER_NAME = "nltk TreebankWordTokenizer, lower-cased"
ROUGE_L_BETA = 1.2  # ESConv's calc_rouge_l (from pycocoevalcap) weights recall with beta 1.2
Tokens = list[str]


@lru_cache(maxsize=1)
def _treebank() -> Any:
    from nltk.tokenize import TreebankWordTokenizer

    return TreebankWordTokenizer()


def tokenize(text: str) -> Tokens:
    """Lower-cased Treebank word tokens."""
    return list(_treebank().tokenize(text.lower()))


def entry(value: float, label: str, implementation: str, **extra: Any) -> dict[str, Any]:
    """One metric result with its provenance."""
    return {"value": float(value), "label": label, "implementation": implementation, **extra}


def bleu(refs: Sequence[Tokens], hyps: Sequence[Tokens], n: int) -> float:
    """Cumulative corpus BLEU-n (uniform weights, smoothing method3), x100, as ESConv's code."""
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    if not hyps:
        raise ValueError("BLEU needs at least one hypothesis")
    weights = tuple([1.0 / n] * n)
    score = corpus_bleu(
        [[r] for r in refs], list(hyps), weights=weights,
        smoothing_function=SmoothingFunction().method3,
    )  # fmt: skip
    return 100.0 * float(score)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a)*len(b)) time, O(len(b)) memory)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_l_sentence(ref: Sequence[str], hyp: Sequence[str], beta: float = ROUGE_L_BETA) -> float:
    """ROUGE-L F_beta of one pair: ((1+b²)PR)/(R+b²P), 0 when P or R is 0 (ESConv's formula)."""
    lcs = lcs_length(ref, hyp)
    prec = lcs / max(len(hyp), 1e-10)
    rec = lcs / max(len(ref), 1e-10)
    if prec == 0 or rec == 0:
        return 0.0
    return ((1 + beta**2) * prec * rec) / (rec + beta**2 * prec)


def rouge_l(refs: Sequence[Tokens], hyps: Sequence[Tokens], beta: float = ROUGE_L_BETA) -> float:
    """Mean sentence ROUGE-L F_beta, x100 (ESConv's corpus figure is this mean)."""
    scores = [rouge_l_sentence(r, h, beta) for r, h in zip(refs, hyps, strict=True)]
    return 100.0 * sum(scores) / max(len(scores), 1)


def rouge_l_rouge_score(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Mean ROUGE-L F1 from Google's `rouge-score` (its own tokenizer, no stemmer), x100."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    scores = [scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps, strict=True)]
    return 100.0 * sum(scores) / max(len(scores), 1)


def distinct(hyps: Sequence[Tokens], n: int, *, esconv_variant: bool = False) -> float:
    """Corpus Distinct-n: distinct n-grams / all n-grams over every hypothesis, x100.

    Args:
        esconv_variant: ESConv's `calc_distinct_k` loops `range(len(sen) - k)`, which skips each
            sentence's last n-gram; True reproduces that (reported under its own name).
    """
    seen: set[tuple[str, ...]] = set()
    total = 0
    for sent in hyps:
        stop = len(sent) - n if esconv_variant else len(sent) - n + 1
        for i in range(max(stop, 0)):
            seen.add(tuple(sent[i : i + n]))
            total += 1
    return 100.0 * len(seen) / total if total else 0.0


def meteor(refs: Sequence[Tokens], hyps: Sequence[Tokens], wordnet: Any) -> float:
    """Mean sentence METEOR from NLTK (`meteor_score`, default alpha/beta/gamma), x100."""
    from nltk.translate.meteor_score import meteor_score

    scores = [meteor_score([r], h, wordnet=wordnet) for r, h in zip(refs, hyps, strict=True)]
    return 100.0 * sum(scores) / max(len(scores), 1)


def meteor_entries(
    refs: Sequence[Tokens], hyps: Sequence[Tokens], cfg: MetricsConfig
) -> dict[str, Any]:
    """METEOR with WordNet; without it, refuse or the explicitly named exact+stem variant."""
    from evaluation.wordnet import NoSynonyms, WordNetUnavailable, load_wordnet

    try:
        wn = load_wordnet(cfg.wordnet_source, cfg.cache_dir)
    except WordNetUnavailable as exc:
        if cfg.meteor_without_wordnet == "refuse":
            return {"meteor": {"value": None, "label": "METEOR", "error": str(exc)}}
        value = meteor(refs, hyps, NoSynonyms())
        return {
            "meteor_exact_stem": entry(
                value, "METEOR (exact+stem only, NO WordNet synonyms)",
                "nltk meteor_score with an empty synonym source", tokenizer=TOKENIZER_NAME,
            )
        }  # fmt: skip
    value = meteor(refs, hyps, wn)
    return {
        "meteor": entry(
            value, "METEOR", "nltk meteor_score (mean over sentences)",
            wordnet=f"WordNet {wn.get_version()} from {cfg.wordnet_source}",
            tokenizer=TOKENIZER_NAME,
        )
    }  # fmt: skip


def mean_length(token_lists: Sequence[Tokens]) -> float:
    """Average number of tokens per utterance (0 for none)."""
    return sum(len(t) for t in token_lists) / len(token_lists) if token_lists else 0.0


def history_utterances(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The context utterances of a run, once each: the longest history seen per dialogue."""
    longest: dict[str, list[str]] = {}
    for row in rows:
        texts = [m["content"] for m in row["messages"] if m.get("role") != "system"]
        if len(texts) >= len(longest.get(row["dialogue_id"], [])):
            longest[row["dialogue_id"]] = texts
    return [t for texts in longest.values() for t in texts]


def length_entries(
    rows: Sequence[dict[str, Any]], ref_tok: Sequence[Tokens], hyp_tok: Sequence[Tokens]
) -> dict[str, Any]:
    """Average tokenized lengths of replies, references and the (represented) context."""
    history = [tokenize(t) for t in history_utterances(rows)]
    return {
        "len_generated": entry(mean_length(hyp_tok), "Avg. length (generated)", "mean tokens",
                               tokenizer=TOKENIZER_NAME),
        "len_reference": entry(mean_length(ref_tok), "Avg. length (reference)", "mean tokens",
                               tokenizer=TOKENIZER_NAME),
        "len_context": entry(mean_length(history), "Avg. context utterance length",
                             "mean tokens over the history as sent to the model",
                             tokenizer=TOKENIZER_NAME, utterances=len(history)),
    }  # fmt: skip


def lexical_entries(
    refs: Sequence[str], hyps: Sequence[str]
) -> tuple[dict[str, Any], list[Tokens], list[Tokens]]:
    """BLEU-2/4, ROUGE-L (two implementations) and Distinct-1/2/3 (two variants)."""
    ref_tok = [tokenize(t) for t in refs]
    hyp_tok = [tokenize(t) for t in hyps]
    bleu_impl = "nltk corpus_bleu, cumulative uniform weights, SmoothingFunction().method3"
    out: dict[str, Any] = {
        "bleu_2": entry(bleu(ref_tok, hyp_tok, 2), "BLEU-2", bleu_impl, tokenizer=TOKENIZER_NAME),
        "bleu_4": entry(bleu(ref_tok, hyp_tok, 4), "BLEU-4", bleu_impl, tokenizer=TOKENIZER_NAME),
        "rouge_l": entry(rouge_l(ref_tok, hyp_tok), "ROUGE-L",
                         f"LCS F-measure beta={ROUGE_L_BETA} (ESConv), mean over sentences",
                         tokenizer=TOKENIZER_NAME),
        "rouge_l_rouge_score": entry(rouge_l_rouge_score(refs, hyps), "ROUGE-L (rouge-score F1)",
                                     "rouge-score 0.1.2 rougeL fmeasure, mean over sentences",
                                     tokenizer="rouge-score default tokenizer"),
    }  # fmt: skip
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = entry(distinct(hyp_tok, n), f"Distinct-{n}",
                                     "corpus distinct n-grams / all n-grams", tokenizer=TOKENIZER_NAME)  # fmt: skip
        out[f"distinct_{n}_esconv"] = entry(
            distinct(hyp_tok, n, esconv_variant=True), f"Distinct-{n} (ESConv code variant)",
            "as ESConv's calc_distinct_k: skips each sentence's last n-gram",
            tokenizer=TOKENIZER_NAME,
        )  # fmt: skip
    return out, ref_tok, hyp_tok


def compute_metrics(rows: Sequence[dict[str, Any]], cfg: MetricsConfig) -> dict[str, Any]:
    """All reference-based metrics except perplexity, over a run's rows."""
    if not rows:
        raise ValueError("no usable generation rows: nothing to score")
    refs = [r["reference"] for r in rows]
    hyps = [r["generated"] for r in rows]
    skip = set(cfg.skip)
    results, ref_tok, hyp_tok = lexical_entries(refs, hyps)
    if "meteor" not in skip:
        results.update(meteor_entries(ref_tok, hyp_tok, cfg))
    if "bertscore" not in skip:
        from evaluation.embeddings import bertscore_entries

        results.update(bertscore_entries(refs, hyps, cfg))
    if "extrema" not in skip:
        from evaluation.embeddings import extrema_entries

        results.update(extrema_entries(ref_tok, hyp_tok, cfg))
    results.update(length_entries(rows, ref_tok, hyp_tok))
    for name, value in results.items():
        v = value.get("value")
        if isinstance(v, float) and not math.isfinite(v):
            logger.warning("metric %s is not finite", name)
    return results


def token_counts(texts: Sequence[str]) -> Counter[int]:
    """Histogram of tokenized lengths (for the report's length distributions)."""
    return Counter(len(tokenize(t)) for t in texts)
