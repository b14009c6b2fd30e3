"""`solace eval judge RUN [--against RUN2]`: the LLM judge over a whole run.

Dialogues are rebuilt from the rows: for each supporter turn in order, the seeker utterances
before it (`seeker_turns`, raw) and then the generated reply (candidate) or the human reply
(reference). Results go to `RUN/judge.jsonl` (one line per dialogue, raw answers included) and
`RUN/judge.json` (the summary).
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.runfiles import write_json
from evaluation.runs import read_rows
from scoring.config import JudgeConfig
from scoring.judge import (
    CRITERIA,
    BudgetExceeded,
    JudgeClient,
    JudgeError,
    ResponseCache,
    judge_dialogue,
    judge_pair,
    pair_messages,
    rubric_messages,
)

logger = logging.getLogger(__name__)
Transcript = list[tuple[str, str]]


def transcripts(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[Transcript, Transcript]]:
    """dialogue_id -> (candidate transcript, reference transcript), turns in order."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["dialogue_id"]].append(row)
    out: dict[str, tuple[Transcript, Transcript]] = {}
    for did, items in grouped.items():
        cand: Transcript = []
        ref: Transcript = []
        for row in sorted(items, key=lambda r: r["turn_index"]):
            for text in row.get("seeker_turns", []):
                cand.append(("user", text))
                ref.append(("user", text))
            cand.append(("assistant", row["generated"]))
            ref.append(("assistant", row["reference"]))
        out[did] = (cand, ref)
    return out


def _summary(per_dialogue: dict[str, Any], client: JudgeClient) -> dict[str, Any]:
    usable = {k: v for k, v in per_dialogue.items() if v["mean"]}
    criteria: dict[str, Any] = {}
    for c in CRITERIA:
        means = [v["mean"][c] for v in usable.values()]
        spreads = [v["std"][c] for v in usable.values()]
        criteria[c] = {
            "mean": statistics.fmean(means) if means else None,
            "std_over_dialogues": statistics.stdev(means) if len(means) > 1 else 0.0,
            "mean_sample_std": statistics.fmean(spreads) if spreads else None,
        }
    return {
        "judge": {"model": client.cfg.model, "base_url": client.cfg.base_url or "api.openai.com",
                  "samples": client.cfg.samples, "temperature": client.cfg.temperature},
        "dialogues": len(per_dialogue), "scored": len(usable),
        "failed": sorted(k for k in per_dialogue if k not in usable),
        "criteria": criteria,
        "spend": vars(client.spend),
    }  # fmt: skip


def _check_budget(
    client: JudgeClient, message_lists: list[list[dict[str, str]]], factor: int
) -> float:
    estimate = client.estimate_usd(message_lists) * factor
    if client.paid and estimate > client.cfg.budget_usd:
        raise BudgetExceeded(
            f"estimated cost ${estimate:.2f} is above judge.budget_usd=${client.cfg.budget_usd:.2f}; "
            "raise the budget (--set judge.budget_usd=...) or judge fewer dialogues"
        )
    return estimate


async def judge_run(
    run: str | Path, cfg: JudgeConfig, *, client: JudgeClient | None = None
) -> dict[str, Any]:
    """Judge every dialogue of a run; writes judge.jsonl and judge.json, returns the summary."""
    run = Path(run)
    dialogues = transcripts(read_rows(run).rows)
    ids = sorted(dialogues)[: cfg.max_dialogues] if cfg.max_dialogues else sorted(dialogues)
    if not ids:
        raise JudgeError(f"{run}: no usable rows to judge")
    cache = ResponseCache(cfg.cache_path or run / "judge_cache.sqlite")
    own = client is None
    client = client or JudgeClient(cfg, cache=cache)
    client.cache = client.cache or cache
    try:
        return await _judge_all(run, ids, dialogues, client, cfg)
    finally:
        cache.close()
        if own:
            await client.aclose()


async def _judge_all(
    run: Path,
    ids: list[str],
    dialogues: dict[str, tuple[Transcript, Transcript]],
    client: JudgeClient,
    cfg: JudgeConfig,
) -> dict[str, Any]:
    estimate = _check_budget(client, [rubric_messages(*dialogues[i]) for i in ids], cfg.samples)
    per_dialogue: dict[str, Any] = {}

    async def one(did: str) -> None:
        cand, ref = dialogues[did]
        try:
            per_dialogue[did] = (await judge_dialogue(client, cand, ref)).to_dict()
        except BudgetExceeded as exc:
            per_dialogue[did] = {
                "mean": {},
                "std": {},
                "samples": [],
                "raw_answers": [],
                "errors": [str(exc)],
            }

    await asyncio.gather(*(one(i) for i in ids))
    with open(run / "judge.jsonl", "w", encoding="utf-8") as fh:
        for did in ids:
            fh.write(
                json.dumps({"dialogue_id": did, **per_dialogue[did]}, ensure_ascii=False) + "\n"
            )
    summary = _summary(per_dialogue, client)
    summary["estimated_usd"] = estimate
    write_json(run / "judge.json", summary)
    return summary


def _assistant_chars(transcript: Transcript) -> int:
    return sum(len(t) for r, t in transcript if r == "assistant")


def length_bias(results: Sequence[tuple[Any, int, int]]) -> dict[str, Any]:
    """How often the longer side won, and how often position A won, over decisive answers.

    Args:
        results: (PairJudgement, chars of first, chars of second) per dialogue.
    """
    longer_won = decisive = a_won = answers = 0
    for pair, len_first, len_second in results:
        for order, winner in (("ab", pair.order_ab), ("ba", pair.order_ba)):
            if winner in (None, "tie"):
                continue
            answers += 1
            shown_first = winner == "first" if order == "ab" else winner == "second"
            a_won += shown_first
            if len_first != len_second:
                decisive += 1
                longer_won += (winner == "first") == (len_first > len_second)
    return {
        "longer_won_share": longer_won / decisive if decisive else None,
        "decisive_answers_with_length_difference": decisive,
        "position_a_won_share": a_won / answers if answers else None,
        "note": "FastChat's MT-bench data: GPT-4 judges prefer the longer answer ~68% of the time",
    }


async def judge_pairwise(
    run_a: str | Path, run_b: str | Path, cfg: JudgeConfig, *, client: JudgeClient | None = None
) -> dict[str, Any]:
    """Pairwise comparison of two runs on their shared dialogues (both orders each)."""
    da = transcripts(read_rows(run_a).rows)
    db = transcripts(read_rows(run_b).rows)
    ids = sorted(set(da) & set(db))[: cfg.max_dialogues or None]
    if not ids:
        raise JudgeError(f"{run_a} and {run_b} share no dialogue ids")
    cache = ResponseCache(cfg.cache_path or Path(run_a) / "judge_cache.sqlite")
    own = client is None
    client = client or JudgeClient(cfg, cache=cache)
    client.cache = client.cache or cache
    try:
        estimate = _check_budget(
            client, [pair_messages(da[i][0], db[i][0], da[i][1]) for i in ids], 2
        )
        pairs = await asyncio.gather(
            *(judge_pair(client, da[i][0], db[i][0], da[i][1]) for i in ids)
        )
    finally:
        cache.close()
        if own:
            await client.aclose()
    verdicts = [p.verdict for p in pairs]
    results = [
        (p, _assistant_chars(da[i][0]), _assistant_chars(db[i][0]))
        for p, i in zip(pairs, ids, strict=True)
    ]
    summary = {
        "first": str(run_a), "second": str(run_b), "dialogues": len(ids),
        "verdicts": {v: verdicts.count(v) for v in ("first", "second", "tie", "inconsistent", "error")},
        "length_bias": length_bias(results), "estimated_usd": estimate, "spend": vars(client.spend),
        "judge": {"model": cfg.model, "base_url": cfg.base_url or "api.openai.com"},
        "per_dialogue": [{"dialogue_id": i, "verdict": p.verdict, "order_ab": p.order_ab,
                          "order_ba": p.order_ba, "raw_answers": p.raw_answers, "errors": p.errors}
                         for i, p in zip(ids, pairs, strict=True)],
    }  # fmt: skip
    write_json(Path(run_a) / f"pairwise_vs_{Path(run_b).name}.json", summary)
    return summary
