"""The endpoint client: any OpenAI-compatible chat API, with the response cache, structured
output, retries with backoff (Retry-After honoured), per-reason counters and the budget cap.

The `openai` client's own retries are off (`max_retries=0`) so that every 429, timeout and
server error is counted in the manifest and the budget is checked before each request.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import random
import time
from typing import Any

from synthesis.config import SynthConfig
from synthesis.store import CachedAnswer, RunStore

CHARS_PER_TOKEN = 4  # rough, for the cost estimate and for endpoints that report no usage
JSON_MODES_DOWN = ("json_schema", "json_object_schema", "json_object", "none")
TRANSIENT_STATUS = (408, 409)


class EndpointError(RuntimeError):
    """A request failed after its retries (the slot stays pending; a rerun tries again)."""


class EndpointFatal(EndpointError):
    """The endpoint refuses every request (key, model name, quota): the run stops."""


class BudgetReached(RuntimeError):
    """Sending the next request could take the spend above `budget_usd`."""


def usd(prompt_tokens: float, completion_tokens: float, prices: tuple[float, float]) -> float:
    """Cost in USD of a request at (input, output) USD per million tokens."""
    return (prompt_tokens * prices[0] + completion_tokens * prices[1]) / 1e6


class Budget:
    """A hard cap: spend so far plus the worst case of every request in flight."""

    def __init__(self, cap_usd: float, spent_usd: float, prices: tuple[float, float]) -> None:
        self.cap = cap_usd
        self.spent = spent_usd
        self.prices = prices
        self.reserved = 0.0

    def reserve(self, prompt_chars: int, max_tokens: int) -> float:
        """Reserve a request's worst-case cost; BudgetReached if it does not fit."""
        worst = usd(prompt_chars / CHARS_PER_TOKEN, max_tokens, self.prices)
        if self.spent + self.reserved + worst > self.cap + 1e-12:
            raise BudgetReached(
                f"budget ${self.cap:.2f}: ${self.spent:.4f} spent, the next request could cost "
                f"up to ${worst:.4f}"
            )
        self.reserved += worst
        return worst

    def settle(self, reserved: float, actual: float) -> None:
        """Replace a reservation by what the request really cost (0 when it failed)."""
        self.reserved = max(self.reserved - reserved, 0.0)
        self.spent += actual


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date), if present."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - time.time(), 0.0)


def request_key(cfg: SynthConfig, messages: list[dict[str, str]], seed: int) -> str:
    """The cache key: sha256 of everything that decides the answer (the model, not its URL)."""
    payload = {
        "model": cfg.model, "messages": messages, "seed": seed,
        "temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class EndpointClient:
    """One run's connection to the endpoint."""

    def __init__(
        self,
        cfg: SynthConfig,
        store: RunStore,
        round_no: int,
        api_key: str | None,
        schema: dict[str, Any],
    ) -> None:
        import openai

        self.cfg = cfg
        self.store = store
        self.round_no = round_no
        self.schema = schema
        self.json_mode: str = "json_schema" if cfg.json_mode == "auto" else cfg.json_mode
        spent = store.spend()["usd"]
        self.budget = Budget(cfg.budget_usd, spent, cfg.prices)
        self._client = openai.AsyncOpenAI(
            base_url=cfg.base_url, api_key=api_key or "no-key",
            timeout=cfg.timeout_seconds, max_retries=0,
        )  # fmt: skip

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    def _format(self) -> dict[str, Any]:
        if self.json_mode == "json_schema":
            schema = {"name": "dialogue", "schema": self.schema, "strict": True}
            return {"response_format": {"type": "json_schema", "json_schema": schema}}
        if self.json_mode == "json_object_schema":  # llama-cpp-python's grammar-backed form
            return {"response_format": {"type": "json_object", "schema": self.schema}}
        if self.json_mode == "json_object":
            return {"response_format": {"type": "json_object"}}
        return {}

    def _step_down(self) -> bool:
        """Use the next weaker structured-output mode (json_mode = auto only)."""
        if self.cfg.json_mode != "auto" or self.json_mode == "none":
            return False
        self.json_mode = JSON_MODES_DOWN[JSON_MODES_DOWN.index(self.json_mode) + 1]
        self.store.bump(self.round_no, f"json_mode_fallback_to_{self.json_mode}")
        return True

    def _refused_format(self, exc: Any) -> None:
        """Step down after the endpoint refused the structured-output request, or stop."""
        if not self._step_down():
            hint = "" if self.cfg.json_mode == "auto" else "; try json_mode = 'auto'"
            raise EndpointFatal(
                f"the endpoint refused the request (HTTP {exc.status_code}): {exc.message}{hint}"
            ) from exc

    def backoff(self, retry: int) -> float:
        """Exponential backoff with jitter, capped."""
        base = min(self.cfg.backoff_max_seconds, self.cfg.backoff_seconds * 2**retry)
        return base * (0.5 + random.random() / 2)

    async def complete(
        self, messages: list[dict[str, str]], seed: int
    ) -> tuple[str, CachedAnswer, bool]:
        """(cache key, answer, came from the cache). Raises BudgetReached or EndpointError.

        A new answer is not stored here: the caller stores it with its outcome in one
        transaction (`RunStore.record_attempt`), withholding the text of unsafe answers.
        """
        key = request_key(self.cfg, messages, seed)
        hit = self.store.cached(key)
        if hit is not None:
            self.store.bump(self.round_no, "cache_hits")
            return key, hit, True
        chars = sum(len(m["content"]) for m in messages)
        reserved = self.budget.reserve(chars, self.cfg.max_tokens)
        try:
            answer = await self._with_retries(messages, seed, chars)
        except BaseException:
            self.budget.settle(reserved, 0.0)
            raise
        self.budget.settle(reserved, answer.usd)
        return key, answer, False

    async def _with_retries(
        self, messages: list[dict[str, str]], seed: int, chars: int
    ) -> CachedAnswer:
        import openai

        retry = 0
        while True:
            try:
                response = await self._client.chat.completions.create(
                    model=self.cfg.model, messages=messages,  # type: ignore[arg-type]
                    temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                    max_tokens=self.cfg.max_tokens, seed=seed, **self._format(),
                )  # fmt: skip
                self.store.bump(self.round_no, "requests")
                return self._answer(response, chars)
            except openai.RateLimitError as exc:
                if getattr(exc, "code", None) == "insufficient_quota":
                    raise EndpointFatal(f"the endpoint says the quota is used up: {exc}") from exc
                name, wait = "http_429", retry_after_seconds(exc.response.headers)
            except openai.APITimeoutError:
                name, wait = "timeout", None
            except openai.APIConnectionError:
                name, wait = "connection_error", None
            except openai.InternalServerError as exc:
                # llama-cpp-python's server answers a response_format it cannot parse with 500
                if self._format() and "response_format" in exc.message:
                    self._refused_format(exc)
                    continue
                name, wait = f"http_{exc.status_code}", retry_after_seconds(exc.response.headers)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if not self._format():
                    raise EndpointFatal(
                        f"the endpoint refused the request (HTTP {exc.status_code}): {exc.message}"
                    ) from exc
                self._refused_format(exc)
                continue
            except openai.APIStatusError as exc:
                if exc.status_code not in TRANSIENT_STATUS:
                    raise EndpointFatal(
                        f"the endpoint refused the request (HTTP {exc.status_code}): "
                        f"{exc.message}; check base_url, model and ${self.cfg.api_key_env}"
                    ) from exc
                name, wait = f"http_{exc.status_code}", retry_after_seconds(exc.response.headers)
            self.store.bump(self.round_no, name)
            if retry >= self.cfg.http_retries:
                raise EndpointError(f"{name} after {retry + 1} tries")
            delay = self.backoff(retry) if wait is None else wait
            await asyncio.sleep(min(delay, self.cfg.backoff_max_seconds))
            retry += 1

    def _answer(self, response: Any, chars: int) -> CachedAnswer:
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content or "") if choice is not None else ""
        usage = response.usage
        if usage is not None and usage.prompt_tokens is not None:
            prompt, completion, estimated = usage.prompt_tokens, usage.completion_tokens or 0, False
        else:
            prompt, completion, estimated = (
                chars // CHARS_PER_TOKEN,
                len(text) // CHARS_PER_TOKEN,
                True,
            )
        return CachedAnswer(
            answer=text,
            finish_reason=choice.finish_reason if choice is not None else None,
            prompt_tokens=prompt,
            completion_tokens=completion,
            usage_estimated=estimated,
            usd=usd(prompt, completion, self.cfg.prices),
        )
