"""One synthesis round: plan the slots, choose seeds, estimate the cost, ask, validate,
de-duplicate and queue candidates for review — resumably, with a progress bar.

Round 1 takes its seed examples from `seeds`; round N > 1 from the dialogues the reviewer
accepted (or edited) in round N - 1, as the ExTES authors replaced their seeds by generated
dialogues. A round's plan (model, template, scenarios, seeds, gates) is fingerprinted; a rerun of
the same round with a different plan is refused, so one round never mixes two set-ups.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dialogue.types import Dialogue
from synthesis.client import (
    CHARS_PER_TOKEN,
    BudgetReached,
    EndpointClient,
    EndpointError,
    EndpointFatal,
    usd,
)
from synthesis.config import SynthConfig
from synthesis.dedup import NearDuplicateIndex, shingles
from synthesis.records import record_dialogue, record_turns
from synthesis.scenarios import Scenario
from synthesis.store import OUTPUT_STATUSES, Attempt, RunStore, Slot
from synthesis.template import build_messages, template_hash
from synthesis.validate import REASONS, Validator

logger = logging.getLogger(__name__)

MIN_SEED_TURNS = 4
MIN_SEED_LABELLED_SHARE = 0.5
# What may not change within a round (the endpoint's URL may: a local server on a new port).
PLAN_KEYS_FIXED = ("model", "template_hash", "scenarios", "seed_ids", "validation",
                   "temperature", "top_p", "max_tokens", "random_seed", "taxonomy")  # fmt: skip


class PipelineError(RuntimeError):
    """The round cannot run as configured; the message says what to change."""


@dataclass
class RoundPlan:
    """What a round will do."""

    round_no: int
    scenarios: list[Scenario]
    seeds: list[Dialogue]
    seed_source: str
    seeds_excluded: dict[str, int]
    fingerprint: dict[str, Any]


@dataclass
class RoundSummary:
    """What one invocation of a round did."""

    round_no: int
    slots: int = 0
    done: int = 0
    failed: int = 0
    pending: int = 0
    answers: int = 0
    cached: int = 0
    new_candidates: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    stopped: str | None = None


def eligible_seeds(dialogues: list[Dialogue]) -> tuple[list[Dialogue], dict[str, int]]:
    """Seeds that show the format: enough turns, and most AI turns carry a strategy."""
    keep: list[Dialogue] = []
    excluded: Counter[str] = Counter()
    for d in dialogues:
        ai = [t for t in d.turns if t.role == "assistant"]
        if len(d.turns) < MIN_SEED_TURNS:
            excluded["too_few_turns"] += 1
        elif not ai or sum(t.strategy is not None for t in ai) / len(ai) < MIN_SEED_LABELLED_SHARE:
            excluded["strategies_unlabelled"] += 1
        else:
            keep.append(d)
    return keep, dict(excluded)


def _round_seeds(cfg: SynthConfig, store: RunStore, round_no: int) -> tuple[list[Dialogue], str]:
    if round_no == 1:
        from dialogue.datasets import DatasetError, load_spec

        try:
            return load_spec(cfg.seeds).dialogues, cfg.seeds
        except DatasetError as exc:
            raise PipelineError(f"seeds: {exc}") from exc
    previous = store.candidates(round_no - 1)
    if not previous:
        raise PipelineError(f"round {round_no - 1} has no candidates; run it first")
    pending = sum(c.status == "pending" for c in previous)
    if pending:
        raise PipelineError(
            f"round {round_no - 1} has {pending} dialogues waiting for review; review them "
            f"first (solace data review {cfg.run_dir()})"
        )
    accepted = [c for c in previous if c.status in OUTPUT_STATUSES]
    seeds = [record_dialogue(c.record, c.id) for c in accepted]
    return seeds, f"round {round_no - 1} accepted"


def plan_round(
    cfg: SynthConfig, store: RunStore, round_no: int, scenarios: list[Scenario]
) -> RoundPlan:
    """Seeds, fingerprint and slots of a round; refuses a changed plan for a started round."""
    raw, source = _round_seeds(cfg, store, round_no)
    seeds, excluded = eligible_seeds(raw)
    if not seeds:
        raise PipelineError(
            f"no usable seed dialogue in {source} ({len(raw)} loaded; excluded: {excluded}); "
            f"a seed needs {MIN_SEED_TURNS}+ turns and strategy labels on most AI turns"
        )
    fingerprint = {
        "model": cfg.model, "base_url": cfg.base_url, "template_hash": template_hash(),
        "scenarios": [[s.name, s.description] for s in scenarios],
        "seed_ids": [d.id for d in seeds], "validation": cfg.validation.model_dump(),
        "temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens,
        "random_seed": cfg.random_seed, "taxonomy": cfg.taxonomy,
    }  # fmt: skip
    stored = store.get_meta(f"round:{round_no}")
    if stored is not None:
        changed = [k for k in PLAN_KEYS_FIXED if stored.get(k) != fingerprint[k]]
        if changed:
            raise PipelineError(
                f"round {round_no} was started with a different {', '.join(changed)}; keep "
                "them, start the next round, or use another output_dir"
            )
    return RoundPlan(round_no, scenarios, seeds, source, excluded, fingerprint)


def choose_seed(
    seeds: list[Dialogue], scenario: str, slot: Slot, attempt: int, base: int
) -> Dialogue:
    """A seed for this request: one of the same scene when there is one, else any; stable."""
    same = [d for d in seeds if (d.scene or "").casefold() == scenario.casefold()]
    pool = same or seeds
    return pool[_stable_int(base, slot.round, scenario, slot.slot, attempt, "seed") % len(pool)]


def _stable_int(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def candidate_id(round_no: int, scenario: str, slot: int) -> str:
    """`r1:work-related-stress-and-burnout:3`."""
    slug = re.sub(r"[^a-z0-9]+", "-", scenario.lower()).strip("-") or "scenario"
    return f"r{round_no}:{slug}:{slot}"


def estimate(cfg: SynthConfig, plan: RoundPlan, pending_slots: int) -> dict[str, float]:
    """Requests and USD for the pending slots: one answer each, and the worst case."""
    example = build_messages(
        plan.scenarios[0], plan.seeds[0], cfg.validation.min_turns, cfg.validation.max_turns, None
    )
    prompt_tokens = sum(len(m["content"]) for m in example) / CHARS_PER_TOKEN
    typical_answer = min(cfg.max_tokens, 1100)  # ~18 utterances of ~26 words, in JSON
    worst = pending_slots * cfg.max_attempts
    return {
        "slots": pending_slots,
        "prompt_tokens_per_request": round(prompt_tokens),
        "usd_one_answer_each": usd(
            pending_slots * prompt_tokens, pending_slots * typical_answer, cfg.prices
        ),
        "usd_worst_case": usd(worst * prompt_tokens, worst * cfg.max_tokens, cfg.prices),
    }


class RoundRunner:
    """Fills a round's pending slots with `concurrency` workers."""

    def __init__(
        self,
        cfg: SynthConfig,
        store: RunStore,
        plan: RoundPlan,
        client: EndpointClient,
        on_progress: Callable[[RoundSummary], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.plan = plan
        self.client = client
        self.validator = Validator(cfg.validation)
        self.on_progress = on_progress
        self.by_name = {s.name: s for s in plan.scenarios}
        self.index = NearDuplicateIndex(cfg.validation.dedup_threshold)
        for c in store.candidates():
            self.index.add(c.id, shingles(t.text for t in record_turns(c.generated)))
        for seed in plan.seeds:
            self.index.add(f"seed:{seed.id}", shingles(t.text for t in seed.turns))
        self.summary = RoundSummary(plan.round_no)
        self._endpoint_failures_in_a_row = 0
        self._stop: str | None = None

    async def run(self) -> RoundSummary:
        """Run until every slot is done or failed, or the budget/endpoint stops the round."""
        store, plan = self.store, self.plan
        if store.get_meta(f"round:{plan.round_no}") is None:
            store.set_meta(f"round:{plan.round_no}", plan.fingerprint)
            store.set_meta(f"round:{plan.round_no}:seeds", {
                "source": plan.seed_source, "ids": [d.id for d in plan.seeds],
                "excluded": plan.seeds_excluded,
            })  # fmt: skip
        store.ensure_slots(plan.round_no, [s.name for s in plan.scenarios], self.cfg.per_scenario)
        wanted = {s.name for s in plan.scenarios}
        slots = [s for s in store.slots(plan.round_no) if s.scenario in wanted]
        slots = [s for s in slots if s.slot < self.cfg.per_scenario]
        self.summary.slots = len(slots)
        self.summary.done = sum(s.status == "done" for s in slots)
        self.summary.failed = sum(s.status == "failed" for s in slots)
        queue: asyncio.Queue[Slot] = asyncio.Queue()
        for slot in slots:
            if slot.status == "pending":
                queue.put_nowait(slot)
        self._report()
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(self.cfg.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
        self.summary.pending = self.summary.slots - self.summary.done - self.summary.failed
        self.summary.stopped = self._stop
        logger.info(
            "round %d: %d slots, %d done, %d failed, %d pending, %d answers (%d cached)%s",
            plan.round_no, self.summary.slots, self.summary.done, self.summary.failed,
            self.summary.pending, self.summary.answers, self.summary.cached,
            f"; stopped: {self._stop}" if self._stop else "",
        )  # fmt: skip
        return self.summary

    async def _worker(self, queue: asyncio.Queue[Slot]) -> None:
        while self._stop is None:
            try:
                slot = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                status = await self._fill(slot)
            except BudgetReached as exc:
                self._stop = f"budget: {exc}"
                return
            except EndpointFatal as exc:
                self._stop = f"endpoint: {exc}"
                return
            except EndpointError as exc:
                self.store.bump(self.plan.round_no, "slots_left_after_endpoint_errors")
                self._endpoint_failures_in_a_row += 1
                if self._endpoint_failures_in_a_row >= self.cfg.abort_after_endpoint_failures:
                    self._stop = f"endpoint: {self._endpoint_failures_in_a_row} slots in a row failed ({exc})"
                continue
            self._endpoint_failures_in_a_row = 0
            if status == "done":
                self.summary.done += 1
            elif status == "failed":
                self.summary.failed += 1
            self._report()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.summary)

    async def _fill(self, slot: Slot) -> str:
        """Ask for this slot until a candidate passes or its attempts are used up."""
        cfg, scenario = self.cfg, self.by_name[slot.scenario]
        attempt = self.store.attempts_made(slot)
        retry_reason = self._last_reason(slot) if attempt else None
        while attempt < cfg.max_attempts:
            seed = choose_seed(self.plan.seeds, slot.scenario, slot, attempt, cfg.random_seed)
            messages = build_messages(
                scenario, seed, cfg.validation.min_turns, cfg.validation.max_turns, retry_reason
            )
            request_seed = _stable_int(
                cfg.random_seed, slot.round, slot.scenario, slot.slot, attempt
            )
            key, answer, cached = await self.client.complete(messages, request_seed)
            self.summary.answers += 1
            self.summary.cached += cached
            verdict = self.validator.check(answer.answer, scenario.name, seed, answer.finish_reason)
            items = frozenset[str]()
            if verdict.ok and verdict.record is not None:
                items = shingles(t.text for t in record_turns(verdict.record))
                duplicate = self.index.find(items)
                if duplicate is not None:
                    verdict.reason, verdict.detail = (
                        "near_duplicate",
                        f"{duplicate[0]} ({duplicate[1]:.2f})",
                    )
            last = attempt + 1 >= cfg.max_attempts
            cid = candidate_id(slot.round, slot.scenario, slot.slot)
            record = (cid, verdict.record) if verdict.ok and verdict.record is not None else None
            self.store.record_attempt(
                Attempt(
                    slot, attempt, key, seed.id, verdict.reason, verdict.detail, verdict.repairs
                ),
                record,
                "done" if record else ("failed" if last else "pending"),
                None if cached else (cfg.model, answer),
            )
            if record is not None:
                self.index.add(cid, items)
                self.summary.new_candidates += 1
                return "done"
            reason = verdict.reason or "not_a_dialogue"
            self.summary.rejections[reason] += 1
            retry_reason = REASONS[reason][1]
            attempt += 1
            if not last and not cached:
                await asyncio.sleep(self.client.backoff(attempt - 1))
        return "failed"

    def _last_reason(self, slot: Slot) -> str | None:
        rows = [
            r for r in self.store.attempt_rows(slot.round)
            if r["scenario"] == slot.scenario and r["slot"] == slot.slot
        ]  # fmt: skip
        reason = rows[-1]["reason"] if rows else None
        return REASONS[reason][1] if reason in REASONS else None
