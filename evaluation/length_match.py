"""How much of a METEOR / BERTScore gap between two runs is reply length.

Both metrics reward recall of the reference's words, so a model whose replies are longer than
the references scores higher at equal quality, and a fine-tune that learns the human length
(shorter) can lose them to a rambling base. Per turn, on the turns two runs share:

* **ratio-matched subsets**: each run's turns whose reply is within ±25% of the reference's
  length, and the mean score there;
* **length bins**: mean score per bin of reply length (word tokens), each run's turns in it;
* **standardized gap**: run B minus run A within each bin, weighted by the share of all turns
  (both runs) in that bin, over the bins where both runs have at least `MIN_BIN_TURNS` turns.
  It is the gap at equal reply-length distributions; the raw gap minus it is the length effect;
* a paired bootstrap interval of the raw per-turn gap.

Scores use `evaluation.metrics` (NLTK METEOR with WordNet, the Treebank tokenizer) and the
configured BERTScore model (all-MiniLM-L6-v2 by default), per pair.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from evaluation.config import MetricsConfig
from evaluation.metrics import TOKENIZER_NAME, tokenize

RATIO_BAND = (0.75, 1.25)
LENGTH_BINS = (0, 10, 20, 30, 45, 70, 10**9)  # reply length in word tokens, [lo, hi)
MIN_BIN_TURNS = 10
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 7
METRICS = ("meteor", "bertscore_f1")


def per_turn_scores(rows: Sequence[dict[str, Any]], cfg: MetricsConfig) -> dict[str, dict]:
    """key -> {meteor, bertscore_f1 (x100), gen_len, ref_len} for every row with a reply."""
    from nltk.translate.meteor_score import meteor_score

    from evaluation.wordnet import load_wordnet

    usable = [r for r in rows if r.get("generated")]
    wn = load_wordnet(cfg.wordnet_source, cfg.cache_dir)
    refs = [tokenize(r["reference"]) for r in usable]
    hyps = [tokenize(r["generated"]) for r in usable]
    f1 = bertscore_f1_per_pair(
        [r["reference"] for r in usable], [r["generated"] for r in usable], cfg
    )
    out = {}
    for row, ref, hyp, f in zip(usable, refs, hyps, f1, strict=True):
        out[row["key"]] = {
            "meteor": 100.0 * meteor_score([ref], hyp, wordnet=wn),
            "bertscore_f1": 100.0 * f,
            "gen_len": len(hyp),
            "ref_len": len(ref),
        }
    return out


def bertscore_f1_per_pair(
    refs: Sequence[str], hyps: Sequence[str], cfg: MetricsConfig
) -> list[float]:
    """BERTScore F1 of each pair with the configured model (the run's metrics.json model)."""
    import os
    from pathlib import Path

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from evaluation.embeddings import _num_layers, bertscore_pairs, minilm_dir

    model_dir = Path(cfg.bertscore_model) if cfg.bertscore_model else minilm_dir()
    layers = _num_layers(model_dir, cfg.bertscore_num_layers)
    return bertscore_pairs(refs, hyps, model_dir, layers, cfg.bertscore_batch_size)[2]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def ratio_matched(scores: dict[str, dict]) -> dict[str, Any]:
    """Mean scores on the turns whose reply is within RATIO_BAND of the reference length."""
    lo, hi = RATIO_BAND
    kept = [s for s in scores.values() if s["ref_len"] and lo <= s["gen_len"] / s["ref_len"] <= hi]
    return {"turns": len(kept), "share": len(kept) / max(len(scores), 1),
            **{m: _mean([s[m] for s in kept]) for m in METRICS}}  # fmt: skip


def bin_of(length: int) -> int:
    """Index of the LENGTH_BINS bin holding a reply of `length` tokens."""
    for i in range(len(LENGTH_BINS) - 1):
        if LENGTH_BINS[i] <= length < LENGTH_BINS[i + 1]:
            return i
    return len(LENGTH_BINS) - 2


def bin_label(i: int) -> str:
    """'10-19' style label of bin i (the last is open: '70+')."""
    lo, hi = LENGTH_BINS[i], LENGTH_BINS[i + 1]
    return f"{lo}+" if hi >= 10**9 else f"{lo}-{hi - 1}"


def binned(scores: dict[str, dict]) -> list[dict[str, Any]]:
    """Per length bin: turns and mean scores."""
    groups: list[list[dict]] = [[] for _ in range(len(LENGTH_BINS) - 1)]
    for s in scores.values():
        groups[bin_of(s["gen_len"])].append(s)
    return [{"bin": bin_label(i), "turns": len(g), **{m: _mean([s[m] for s in g]) for m in METRICS}}
            for i, g in enumerate(groups)]  # fmt: skip


def standardized_gap(a: dict[str, dict], b: dict[str, dict], metric: str) -> dict[str, Any]:
    """B - A at equal reply-length distributions (pooled bin weights), and the raw gap."""
    bins_a, bins_b = binned(a), binned(b)
    used = [i for i, (x, y) in enumerate(zip(bins_a, bins_b, strict=True))
            if x["turns"] >= MIN_BIN_TURNS and y["turns"] >= MIN_BIN_TURNS]  # fmt: skip
    weight = {i: bins_a[i]["turns"] + bins_b[i]["turns"] for i in used}
    total = sum(weight.values())
    adjusted = (
        sum(weight[i] * (bins_b[i][metric] - bins_a[i][metric]) for i in used) / total
        if total
        else None
    )
    raw = _mean([s[metric] for s in b.values()])
    base = _mean([s[metric] for s in a.values()])
    gap = raw - base if raw is not None and base is not None else None
    covered = total / (sum(x["turns"] for x in bins_a) + sum(y["turns"] for y in bins_b))
    return {"raw_gap": gap, "length_adjusted_gap": adjusted,
            "length_effect": gap - adjusted if gap is not None and adjusted is not None else None,
            "bins_used": [bin_label(i) for i in used], "turns_covered": covered}  # fmt: skip


def paired_bootstrap(a: dict[str, dict], b: dict[str, dict], metric: str) -> dict[str, Any]:
    """95% interval of mean(B - A) over the shared turns (resampling turns)."""
    keys = sorted(set(a) & set(b))
    diffs = [b[k][metric] - a[k][metric] for k in keys]
    if not diffs:
        return {"turns": 0, "mean": None, "low": None, "high": None}
    rng = random.Random(BOOTSTRAP_SEED)
    means = sorted(
        sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(BOOTSTRAP_SAMPLES)
    )
    low = means[math.floor(0.025 * BOOTSTRAP_SAMPLES)]
    high = means[math.ceil(0.975 * BOOTSTRAP_SAMPLES) - 1]
    return {"turns": len(diffs), "mean": sum(diffs) / len(diffs), "low": low, "high": high}


def compare_runs(a: dict[str, dict], b: dict[str, dict]) -> dict[str, Any]:
    """Everything above for run B against run A (e.g. a fine-tune against the base)."""
    shared = set(a) & set(b)
    a, b = {k: a[k] for k in shared}, {k: b[k] for k in shared}
    return {
        "turns": len(shared),
        "tokenizer": TOKENIZER_NAME,
        "mean_gen_len": {"a": _mean([s["gen_len"] for s in a.values()]),
                         "b": _mean([s["gen_len"] for s in b.values()]),
                         "reference": _mean([s["ref_len"] for s in a.values()])},
        "ratio_matched": {"a": ratio_matched(a), "b": ratio_matched(b)},
        "bins": {"a": binned(a), "b": binned(b)},
        **{m: {**standardized_gap(a, b, m), "bootstrap": paired_bootstrap(a, b, m)}
           for m in METRICS},
    }  # fmt: skip
