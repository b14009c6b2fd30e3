"""The run directory's products: `dialogues.json` (accepted dialogues, the ExTES format that
`dialogue.datasets.load_extes` reads) and `manifest.json` (endpoint, model, template hash, seeds,
counts per scenario and strategy, rejection reasons, review decisions, cost).

Both are rewritten from the store after every synthesis run and review session, atomically, so
they always agree with each other and with the store.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from common.runfiles import git_sha, write_json
from synthesis.store import OUTPUT_STATUSES, RunStore
from synthesis.template import TEMPLATE_VERSION, template_hash

STORE_FILE = "synth.db"
OUTPUT_FILE = "dialogues.json"
MANIFEST_FILE = "manifest.json"
# Details worth counting per value (their values are categories, not positions).
DETAILED_REASONS = ("unsafe_supporter", "seeker_crisis", "strategy_unknown")


def output_records(store: RunStore) -> list[dict[str, Any]]:
    """Accepted and edited dialogues, oldest round first, with their provenance."""
    records = []
    for c in store.candidates(statuses=OUTPUT_STATUSES):
        provenance = {"id": c.id, "round": c.round, "seed": c.seed_id, "review": c.status}
        records.append({**c.record, "synthetic": provenance})
    return records


def _round_entry(store: RunStore, round_no: int) -> dict[str, Any]:
    rows = store.attempt_rows(round_no)
    slots = store.slots(round_no)
    reasons = Counter(r["reason"] for r in rows if r["reason"])
    details = Counter(
        f"{r['reason']}:{r['detail']}" for r in rows if r["reason"] in DETAILED_REASONS
    )
    repairs: Counter[str] = Counter()
    for r in rows:
        repairs.update(r["repairs"])
    review = Counter(c.status for c in store.candidates(round_no))
    per_scenario: dict[str, Counter[str]] = {}
    for s in slots:
        per_scenario.setdefault(s.scenario, Counter())[s.status] += 1
    plan = store.get_meta(f"round:{round_no}") or {}
    return {
        "round": round_no,
        "model": plan.get("model"),
        "base_url": plan.get("base_url"),
        "template_hash": plan.get("template_hash"),
        "seeds": store.get_meta(f"round:{round_no}:seeds"),
        "slots": dict(Counter(s.status for s in slots), total=len(slots)),
        "per_scenario": {name: dict(c) for name, c in per_scenario.items()},
        "answers": len(rows),
        "rejection_reasons": dict(reasons.most_common()),
        "rejection_details": dict(details.most_common()),
        "repairs": dict(repairs.most_common()),
        "review": {k: review.get(k, 0) for k in ("pending", "accepted", "edited", "rejected")},
        "counters": store.counters(round_no),
        "spend": store.spend([r["response_key"] for r in rows]),
    }


def build_manifest(store: RunStore, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest dict (see the module docstring)."""
    config = store.get_meta("config") or {}
    scenes = Counter(r["scene"] for r in records)
    strategies = Counter(
        item.get("AI Strategy") or "(none)"
        for r in records
        for item in r["content"]
        if "AI" in item
    )
    utterances = sum(len(r["content"]) for r in records)
    spend = store.spend()
    return {
        "stage": "synthesize",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_sha": git_sha(),
        "endpoint": {
            "base_url": config.get("base_url") or "api.openai.com",
            "model": config.get("model"),
        },  # fmt: skip
        "template": {"version": TEMPLATE_VERSION, "hash": template_hash()},
        "taxonomy": config.get("taxonomy", "extes"),
        "config": config,
        "rounds": [_round_entry(store, n) for n in store.rounds()],
        "output": {
            "file": OUTPUT_FILE,
            "format": "ExTES (dialogue.datasets.load_extes)",
            "dialogues": len(records),
            "utterances": utterances,
            "per_scenario": dict(scenes.most_common()),
            "per_strategy": dict(strategies.most_common()),
        },
        "cost": {
            "usd": round(spend["usd"], 6),
            "budget_usd": config.get("budget_usd"),
            "prices_usd_per_mtok": [
                config.get("price_input_per_mtok"),
                config.get("price_output_per_mtok"),
            ],  # fmt: skip
            "requests": spend["requests"],
            "prompt_tokens": spend["prompt_tokens"],
            "completion_tokens": spend["completion_tokens"],
            "answers_with_estimated_usage": spend["usage_estimated"],
        },
    }


def write_outputs(store: RunStore, run_dir: Path) -> dict[str, Any]:
    """Rewrite dialogues.json and manifest.json from the store; returns the manifest."""
    run_dir.mkdir(parents=True, exist_ok=True)
    records = output_records(store)
    manifest = build_manifest(store, records)
    write_json(run_dir / OUTPUT_FILE, records, indent=1)
    write_json(run_dir / MANIFEST_FILE, manifest, indent=1)
    return manifest
