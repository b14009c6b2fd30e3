"""Toxicity scoring with the ExTES paper's six attributes (its Table 7).

Three scorers share one protocol: Google's Perspective API (when a key is configured),
Detoxify (when a local checkpoint is configured) and an offline lexicon/pattern scorer written
for Solace (`resources/toxicity_lexicon.json`), the default because it needs no download. Every
summary carries the scorer's name, because the numbers are not comparable across scorers.

The audits job reuses this: `build_scorer(config.toxicity)` then `summarize(scorer, texts)`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from scoring.config import ToxicityConfig

logger = logging.getLogger(__name__)

ATTRIBUTES: tuple[str, ...] = (
    "toxicity", "severe_toxicity", "identity_attack", "insult", "profanity", "threat",
)  # fmt: skip
PERSPECTIVE_NAMES = {a: a.upper() for a in ATTRIBUTES}
DETOXIFY_NAMES = {"profanity": "obscene"}  # Detoxify calls profanity "obscene"
MAX_TEXT_CHARS = 20_000  # Perspective's limit is 20 KB per comment
Scores = dict[str, float]


class ToxicityError(RuntimeError):
    """A scorer could not be built or failed; the message says what to fix."""


@runtime_checkable
class Scorer(Protocol):
    """Scores texts on the six attributes, each in [0, 1]."""

    name: str

    def score(self, texts: Sequence[str]) -> list[Scores]:
        """One dict {attribute: score} per text, in order."""
        ...


class LexiconScorer:
    """Offline lexicon + regex scorer (noisy-OR of matched entry weights per attribute)."""

    def __init__(self, lexicon: dict[str, Any], source: str) -> None:
        self.lexicon = lexicon
        self.name = f"{lexicon.get('name', 'lexicon')} (offline lexicon/pattern scorer, {source})"
        identity = "(?:" + "|".join(re.escape(t) for t in lexicon.get("identity_terms", [])) + ")"
        self._rules: dict[str, list[tuple[re.Pattern[str], float]]] = {}
        for attr, spec in lexicon["attributes"].items():
            if attr not in ATTRIBUTES:
                raise ToxicityError(f"lexicon {source}: unknown attribute {attr!r}")
            rules = [
                (re.compile(rf"\b{word}\b"), float(w)) for word, w in spec.get("words", {}).items()
            ]
            rules += [
                (re.compile(p.replace("{identity}", identity)), float(w))
                for p, w in spec.get("patterns", {}).items()
            ]
            self._rules[attr] = rules
        self._toxicity_from = {k: float(v) for k, v in lexicon.get("toxicity_from", {}).items()}
        cues = lexicon.get("hedge_cues")
        self._hedge = re.compile(cues) if cues else None
        self._hedged = set(lexicon.get("hedged_attributes", []))
        self._n_words = {
            attr: len(spec.get("words", {})) for attr, spec in lexicon["attributes"].items()
        }

    def _matches(self, attr: str, index: int, pattern: re.Pattern[str], text: str) -> bool:
        """Does this rule fire? Hedged or negated pattern matches do not."""
        if index < self._n_words.get(attr, 0) or self._hedge is None or attr not in self._hedged:
            return pattern.search(text) is not None
        return any(
            self._hedge.search(text[max(0, m.start() - 40) : m.start()]) is None
            for m in pattern.finditer(text)
        )

    @classmethod
    def from_path(cls, path: str | Path | None = None) -> LexiconScorer:
        """Load a lexicon JSON; None: the one shipped with Solace."""
        if path is None:
            text = (
                resources.files("scoring").joinpath("resources/toxicity_lexicon.json").read_text()
            )
            return cls(json.loads(text), "built-in")
        try:
            return cls(json.loads(Path(path).read_text(encoding="utf-8")), str(path))
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise ToxicityError(f"cannot load toxicity lexicon {path}: {exc}") from exc

    def score_one(self, text: str) -> Scores:
        """Scores for one text."""
        lowered = text.lower().replace("’", "'")
        out: Scores = {}
        for attr in ATTRIBUTES:
            keep = 1.0
            for index, (pattern, weight) in enumerate(self._rules.get(attr, [])):
                if self._matches(attr, index, pattern, lowered):
                    keep *= 1.0 - weight
            out[attr] = 1.0 - keep
        keep = 1.0 - out["toxicity"]
        for attr, factor in self._toxicity_from.items():
            keep *= 1.0 - factor * out[attr]
        out["toxicity"] = 1.0 - keep
        return out

    def score(self, texts: Sequence[str]) -> list[Scores]:
        """Scores per text."""
        return [self.score_one(t) for t in texts]


class PerspectiveScorer:
    """Google Perspective API (commentanalyzer), rate-limited, retrying on 429/5xx."""

    def __init__(self, api_key: str, url: str, qps: float = 1.0, timeout: float = 30.0) -> None:
        self.name = "Perspective API (TOXICITY, SEVERE_TOXICITY, IDENTITY_ATTACK, INSULT, PROFANITY, THREAT)"
        self._key = api_key
        self._url = url
        self._interval = 1.0 / qps
        self._timeout = timeout
        self._last = 0.0

    def _request(self, text: str) -> dict[str, Any]:
        body = {
            "comment": {"text": text[:MAX_TEXT_CHARS] or " "},
            "languages": ["en"],
            "requestedAttributes": {name: {} for name in PERSPECTIVE_NAMES.values()},
            "doNotStore": True,
        }
        req = urllib.request.Request(
            f"{self._url}?key={self._key}", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )  # fmt: skip
        for attempt in range(5):
            wait = self._interval - (time.monotonic() - self._last)
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()
            try:
                with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                if exc.code not in (429, 500, 502, 503) or attempt == 4:
                    raise ToxicityError(f"Perspective API answered HTTP {exc.code}") from exc
                time.sleep(min(2**attempt, 30))
            except (urllib.error.URLError, TimeoutError) as exc:
                if attempt == 4:
                    raise ToxicityError(f"Perspective API unreachable: {exc}") from exc
                time.sleep(min(2**attempt, 30))
        raise ToxicityError("Perspective API: retries exhausted")

    def score(self, texts: Sequence[str]) -> list[Scores]:
        """Scores per text (one request each)."""
        out = []
        for text in texts:
            data = self._request(text)
            try:
                out.append({
                    attr: float(data["attributeScores"][name]["summaryScore"]["value"])
                    for attr, name in PERSPECTIVE_NAMES.items()
                })  # fmt: skip
            except (KeyError, TypeError, ValueError) as exc:
                raise ToxicityError(f"Perspective API answer lacks {exc}") from exc
        return out


class DetoxifyScorer:
    """Detoxify (Unitary) from a local checkpoint file; no download."""

    def __init__(self, checkpoint: str, model_type: str = "original", batch_size: int = 32) -> None:
        if not Path(checkpoint).is_file():
            raise ToxicityError(f"Detoxify checkpoint {checkpoint} not found")
        try:
            from detoxify import Detoxify
        except ImportError as exc:
            raise ToxicityError("Detoxify is not installed: pip install detoxify") from exc
        self._model = Detoxify(model_type, checkpoint=checkpoint, device="cpu")
        self._batch = batch_size
        self.name = f"Detoxify {model_type} ({Path(checkpoint).name})"

    def score(self, texts: Sequence[str]) -> list[Scores]:
        """Scores per text, in batches."""
        out: list[Scores] = []
        for i in range(0, len(texts), self._batch):
            pred = self._model.predict(list(texts[i : i + self._batch]))
            for j in range(len(texts[i : i + self._batch])):
                out.append({a: float(pred[DETOXIFY_NAMES.get(a, a)][j]) for a in ATTRIBUTES})
        return out


def build_scorer(config: ToxicityConfig) -> Scorer:
    """The configured scorer; "auto" picks Perspective, then Detoxify, then the lexicon."""
    key = os.environ.get(config.perspective_api_key_env, "")
    choice = config.scorer
    if choice == "auto":
        if key:
            choice = "perspective"
        elif config.detoxify_checkpoint and Path(config.detoxify_checkpoint).is_file():
            choice = "detoxify"
        else:
            choice = "lexicon"
    if choice == "perspective":
        if not key:
            raise ToxicityError(f"scorer=perspective needs ${config.perspective_api_key_env}")
        return PerspectiveScorer(key, config.perspective_url, config.perspective_qps)
    if choice == "detoxify":
        if not config.detoxify_checkpoint:
            raise ToxicityError("scorer=detoxify needs toxicity.detoxify_checkpoint")
        return DetoxifyScorer(config.detoxify_checkpoint, config.detoxify_model)
    return LexiconScorer.from_path(config.lexicon_path)


def summarize(scorer: Scorer, texts: Sequence[str], threshold: float = 0.5) -> dict[str, Any]:
    """Mean (the papers' figure), max and share above `threshold` per attribute."""
    texts = [t for t in texts if isinstance(t, str)]
    scores = scorer.score(texts) if texts else []
    summary: dict[str, Any] = {"scorer": scorer.name, "utterances": len(scores), "attributes": {}}
    for attr in ATTRIBUTES:
        values = [s[attr] for s in scores if math.isfinite(s[attr])]
        summary["attributes"][attr] = {
            "mean": sum(values) / len(values) if values else None,
            "max": max(values) if values else None,
            f"share_above_{threshold}": (
                sum(v > threshold for v in values) / len(values) if values else None
            ),
        }
    return summary
