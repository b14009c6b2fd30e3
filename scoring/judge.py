"""The LLM judge: the seed paper's dialogue-level rubric through any OpenAI-compatible endpoint.

Public API (also used by the bot's scheduled audits):

```python
client = JudgeClient(config.judge)               # AsyncOpenAI + SQLite cache + budget
result = await judge_dialogue(client, candidate, reference=None, samples=3)
result.mean["Comforting"], result.std["Comforting"], result.raw_answers
pair = await judge_pair(client, dialogue_a, dialogue_b, reference=None)   # both orders
```

A dialogue is a sequence of `(role, text)` pairs with roles "user" (the help-seeker) and
"assistant" (the supporter being judged). Answers that are not the requested JSON are re-asked
up to `max_retries` times; every raw answer is kept. Responses are cached by prompt hash, so
re-running a judgement costs nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sqlite3
import statistics
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoring.config import JudgeConfig
from scoring.judge_prompts import (
    CRITERIA,
    PAIR_SCHEMA,
    REASK,
    SCORE_SCHEMA,
    Dialogue,
    format_dialogue,
    pair_messages,
    parse_scores,
    parse_winner,
    rubric_messages,
)

__all__ = [
    "CRITERIA", "BudgetExceeded", "DialogueJudgement", "JudgeClient", "JudgeError",
    "PairJudgement", "ResponseCache", "Spend", "format_dialogue", "is_paid_endpoint",
    "judge_dialogue", "judge_pair", "pair_messages", "parse_scores", "parse_winner",
    "rubric_messages",
]  # fmt: skip

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # rough, for the pre-flight cost estimate only


class JudgeError(RuntimeError):
    """The judge could not produce a usable answer (message says why; raw answers kept)."""


class BudgetExceeded(JudgeError):
    """The estimated or spent cost is above `judge.budget_usd`."""


class ResponseCache:
    """SQLite cache of judge answers keyed by a hash of (model, messages, options, sample)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, "
                "answer TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, "
                "created TEXT DEFAULT CURRENT_TIMESTAMP)"
            )

    @staticmethod
    def key(payload: dict[str, Any]) -> str:
        """sha256 of the canonical JSON of the request."""
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> tuple[str, int, int] | None:
        """(answer, prompt_tokens, completion_tokens) or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT answer, prompt_tokens, completion_tokens FROM responses WHERE key = ?",
                (key,),
            ).fetchone()
        return (row[0], row[1] or 0, row[2] or 0) if row else None

    def put(
        self, key: str, model: str, answer: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Store one answer."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model, answer, prompt_tokens, "
                "completion_tokens) VALUES (?, ?, ?, ?, ?)",
                (key, model, answer, prompt_tokens, completion_tokens),
            )

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def is_paid_endpoint(base_url: str | None) -> bool:
    """True unless the endpoint is on this machine (local servers cost nothing)."""
    if base_url is None:
        return True
    host = re.sub(r"^\w+://", "", base_url).split("/")[0].rsplit(":", 1)[0].strip("[]")
    return host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0")


@dataclass
class Spend:
    """Tokens and money used so far (answers from the cache cost nothing)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    cached: int = 0
    usd: float = 0.0


class JudgeClient:
    """An async OpenAI-compatible client with cache, concurrency limit and budget guard."""

    def __init__(
        self, cfg: JudgeConfig, *, cache: ResponseCache | None = None, api_key: str | None = None
    ) -> None:
        import os

        import openai

        self.cfg = cfg
        self.cache = cache
        self.paid = is_paid_endpoint(cfg.base_url)
        key = api_key or os.environ.get(cfg.api_key_env, "")
        if self.paid and not key:
            raise JudgeError(f"the judge endpoint needs an API key in ${cfg.api_key_env}")
        self._client = openai.AsyncOpenAI(
            base_url=cfg.base_url, api_key=key or "no-key",
            timeout=cfg.timeout_seconds, max_retries=2,
        )  # fmt: skip
        self._sem = asyncio.Semaphore(cfg.concurrency)
        self.spend = Spend()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    def estimate_usd(self, message_lists: Sequence[Sequence[dict[str, str]]]) -> float:
        """Upper-bound cost of sending these requests (answers at `max_tokens`)."""
        if not self.paid:
            return 0.0
        prompt = sum(len(m["content"]) for msgs in message_lists for m in msgs) / CHARS_PER_TOKEN
        answer = len(message_lists) * self.cfg.max_tokens
        return (
            prompt * self.cfg.price_input_per_mtok + answer * self.cfg.price_output_per_mtok
        ) / 1e6

    def _charge(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.spend.prompt_tokens += prompt_tokens
        self.spend.completion_tokens += completion_tokens
        if self.paid:
            self.spend.usd += (
                prompt_tokens * self.cfg.price_input_per_mtok
                + completion_tokens * self.cfg.price_output_per_mtok
            ) / 1e6

    async def complete(
        self,
        messages: Sequence[dict[str, str]],
        *,
        sample: int = 0,
        schema: dict[str, Any] | None = None,
    ) -> str:
        """One answer (from the cache when possible). Raises JudgeError on API failure."""
        import openai

        payload = {
            "model": self.cfg.model, "messages": list(messages), "sample": sample,
            "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens,
            "json_mode": self.cfg.json_mode,
        }  # fmt: skip
        key = ResponseCache.key(payload)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.spend.cached += 1
            return hit[0]
        if self.paid and self.spend.usd >= self.cfg.budget_usd:
            raise BudgetExceeded(f"judge budget ${self.cfg.budget_usd:.2f} spent")
        extra: dict[str, Any] = {}
        if self.cfg.json_mode and schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "judgement", "schema": schema, "strict": True},
            }
        async with self._sem:
            try:
                resp = await self._client.chat.completions.create(
                    model=self.cfg.model, messages=list(messages),  # type: ignore[arg-type]
                    temperature=self.cfg.temperature, max_tokens=self.cfg.max_tokens,
                    seed=sample, **extra,
                )  # fmt: skip
            except openai.APIError as exc:
                raise JudgeError(f"judge endpoint error: {type(exc).__name__}: {exc}") from exc
        self.spend.requests += 1
        answer = (resp.choices[0].message.content or "") if resp.choices else ""
        usage = resp.usage
        pt = (
            usage.prompt_tokens
            if usage
            else sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN
        )
        ct = usage.completion_tokens if usage else len(answer) // CHARS_PER_TOKEN
        self._charge(pt, ct)
        if self.cache is not None:
            self.cache.put(key, self.cfg.model, answer, pt, ct)
        return answer

    async def ask_until_parsed(
        self, messages: list[dict[str, str]], parse: Any, *, sample: int, schema: dict[str, Any]
    ) -> tuple[Any, list[str]]:
        """Ask, re-asking after malformed answers; returns (parsed or None, raw answers)."""
        raws: list[str] = []
        convo = list(messages)
        for _attempt in range(self.cfg.max_retries + 1):
            answer = await self.complete(convo, sample=sample, schema=schema)
            raws.append(answer)
            parsed = parse(answer)
            if parsed is not None:
                return parsed, raws
            convo = [
                *convo,
                {"role": "assistant", "content": answer},
                {"role": "user", "content": REASK},
            ]
        return None, raws


@dataclass
class DialogueJudgement:
    """Rubric scores for one dialogue over `samples` judgements."""

    samples: list[dict[str, float]] = field(default_factory=list)
    raw_answers: list[list[str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def mean(self) -> dict[str, float]:
        """Mean per criterion over the usable samples (empty if none)."""
        if not self.samples:
            return {}
        return {c: statistics.fmean(s[c] for s in self.samples) for c in CRITERIA}

    @property
    def std(self) -> dict[str, float]:
        """Sample standard deviation per criterion (0 with one sample)."""
        if len(self.samples) < 2:
            return dict.fromkeys(CRITERIA, 0.0) if self.samples else {}
        return {c: statistics.stdev(s[c] for s in self.samples) for c in CRITERIA}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"samples": self.samples, "mean": self.mean, "std": self.std,
                "raw_answers": self.raw_answers, "errors": self.errors}  # fmt: skip


async def judge_dialogue(
    client: JudgeClient,
    candidate: Dialogue,
    reference: Dialogue | None = None,
    *,
    samples: int | None = None,
) -> DialogueJudgement:
    """Score `candidate`'s supporter on the four criteria, `samples` times (default: config).

    Never raises for a malformed answer or an API error: they land in `errors` with the raw
    answers, so a batch keeps its partial results. `BudgetExceeded` does propagate.
    """
    result = DialogueJudgement()
    messages = rubric_messages(candidate, reference)
    for sample in range(samples or client.cfg.samples):
        try:
            scores, raws = await client.ask_until_parsed(
                messages, parse_scores, sample=sample, schema=SCORE_SCHEMA
            )
        except BudgetExceeded:
            raise
        except JudgeError as exc:
            result.errors.append(str(exc))
            continue
        result.raw_answers.append(raws)
        if scores is None:
            result.errors.append(f"sample {sample}: no scores after {len(raws)} answers")
        else:
            result.samples.append(scores)
    return result


@dataclass
class PairJudgement:
    """A pairwise comparison asked in both orders."""

    order_ab: str | None  # winner when the first dialogue was shown as A
    order_ba: str | None  # winner (in the first/second sense) when shown swapped
    raw_answers: list[list[str]]
    errors: list[str]

    @property
    def verdict(self) -> str:
        """ "first", "second", "tie" or "inconsistent" (the two orders disagree)."""
        if self.order_ab is None or self.order_ba is None:
            return "error"
        if self.order_ab == self.order_ba:
            return self.order_ab
        return "inconsistent"


async def judge_pair(
    client: JudgeClient, first: Dialogue, second: Dialogue, reference: Dialogue | None = None
) -> PairJudgement:
    """Compare two supporters, once as (A=first, B=second) and once swapped."""
    names = {"A": "first", "B": "second", "tie": "tie"}
    swapped = {"A": "second", "B": "first", "tie": "tie"}
    out = PairJudgement(None, None, [], [])
    for order, (a, b), mapping in (
        ("ab", (first, second), names),
        ("ba", (second, first), swapped),
    ):
        try:
            winner, raws = await client.ask_until_parsed(
                pair_messages(a, b, reference), parse_winner, sample=0, schema=PAIR_SCHEMA
            )
        except BudgetExceeded:
            raise
        except JudgeError as exc:
            out.errors.append(str(exc))
            continue
        out.raw_answers.append(raws)
        if winner is None:
            out.errors.append(f"order {order}: no winner after {len(raws)} answers")
        elif order == "ab":
            out.order_ab = mapping[winner]
        else:
            out.order_ba = mapping[winner]
    return out
