"""The Markdown of bench/bench_scale.py: its table rows, pooled rounds, noise and targets."""

from __future__ import annotations

import statistics
from typing import Any

BASELINE = "embedded (llama-cpp in the bot)"
COLUMNS = (
    "setup",
    "first text p50 s",
    "p95 s",
    "slowest s",
    "slowest vs embedded",
    "first token p50 s (before the hold-back)",
    "slowest first token s",
    "opening: last vs first person",
    "replies/min",
    "vs embedded",
    "CPU s/reply",
    "vs embedded",
    "of which the bot",
    "reply tokens",
    "CPU ms per reply token",
    "vs embedded",
    "prompt tokens evaluated / reused per reply",
    "peak RSS MB (bot + server)",
    "same reply as embedded",
    "kind errors",
)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(name: str, r: dict[str, Any], base: dict[str, Any]) -> str:
    """One setup's row of the table for one number of people."""
    first, opening, token = r["first"], r["opening"], r["first_token"]
    replies = len(r["replies"])
    per_min = 60 * replies / r["seconds"]
    base_per_min = 60 * len(base["replies"]) / base["seconds"]
    cpu = r["cpu_seconds"] / replies
    base_cpu = base["cpu_seconds"] / len(base["replies"])
    slowest, base_slowest = max(first), max(base["first"])
    per_token = r["cpu_seconds"] / max(r["reply_tokens"], 1)
    base_per_token = base["cpu_seconds"] / max(base["reply_tokens"], 1)
    return (
        f"| {name} | {statistics.median(first):.2f} | {_p(first, 0.95):.2f} | {slowest:.2f} "
        f"| {slowest / base_slowest:.2f}x | {statistics.median(token):.2f} | {max(token):.2f} "
        f"| {max(opening) / max(min(opening), 1e-3):.1f}x "
        f"| {per_min:.1f} | {per_min / base_per_min:.2f}x | {cpu:.2f} | {cpu / base_cpu:.2f}x "
        f"| {r['bot_cpu_seconds'] / replies:.2f} | {r['reply_tokens'] / replies:.0f} "
        f"| {1000 * per_token:.0f} | {per_token / base_per_token:.2f}x | {_tokens(r, replies)} "
        f"| {r['rss_mb']:.0f} | {_same(r, base)} | {r['kind_errors']} |"
    )


def _tokens(r: dict[str, Any], replies: int) -> str:
    reused, evaluated = r["prompt_tokens"]
    return f"{evaluated / replies:.0f} / {reused / replies:.0f}" if reused or evaluated else "—"


def _same(r: dict[str, Any], base: dict[str, Any]) -> str:
    hits = sum(r["replies"].get(k) == v for k, v in base["replies"].items())
    return f"{hits}/{len(base['replies'])}"


def pool(results: list[dict[str, Any]], people: tuple[int, ...]) -> dict[str, Any]:
    """One setup's rounds as one result: latencies and replies joined, totals summed, peaks max."""
    pooled: dict[str, Any] = {}
    for n in map(str, people):
        runs = [r[n] for r in results]
        pooled[n] = {
            **{
                key: [x for r in runs for x in r[key]]
                for key in ("first", "opening", "first_token")
            },
            "replies": {f"{i}:{k}": v for i, r in enumerate(runs) for k, v in r["replies"].items()},
            "prompt_tokens": [sum(r["prompt_tokens"][j] for r in runs) for j in (0, 1)],
            "rss_mb": max(r["rss_mb"] for r in runs),
            **{
                key: sum(r[key] for r in runs)
                for key in ("seconds", "cpu_seconds", "bot_cpu_seconds", "reply_tokens")
            },
            "kind_errors": sum(r["kind_errors"] for r in runs),
        }
    return pooled


def noise(embedded: list[dict[str, Any]], people: tuple[int, ...]) -> list[str]:
    """How far the embedded rounds differ from each other: the noise floor of the ratios."""
    if len(embedded) < 2:
        return []
    parts = []
    for n in map(str, people):
        first, last = embedded[0][n], embedded[-1][n]
        cpu = (last["cpu_seconds"] / last["reply_tokens"]) / (
            first["cpu_seconds"] / first["reply_tokens"]
        )
        slowest = max(last["first"]) / max(first["first"])
        parts.append(f"{n}: CPU per reply token {cpu:.2f}x, slowest first text {slowest:.2f}x")
    return ["Noise: the embedded setup's last round vs its first — " + "; ".join(parts) + "."]


def targets(rows: dict[str, Any], people: tuple[int, ...]) -> list[str]:
    """Issue 19's targets for the default setup (llama_server.parallel) against embedded."""
    from bot.config import LlamaServerSettings

    default = LlamaServerSettings.model_fields["parallel"].default
    base, server = rows.get(BASELINE), rows.get(f"llama-server --parallel {default}")
    if base is None or server is None:
        return []

    def ratio(n: int, what: str, of: str | None = None) -> float:
        b, r = base[str(n)], server[str(n)]
        measure = {
            "slowest": lambda x: max(x["first"]),
            "slowest token": lambda x: max(x["first_token"]),
            "rate": lambda x: len(x["replies"]) / x["seconds"],
            "cpu": lambda x: x["cpu_seconds"] / len(x["replies"]),
            "cpu/token": lambda x: x["cpu_seconds"] / max(x["reply_tokens"], 1),
            "tokens/s": lambda x: x["reply_tokens"] / x["seconds"],
        }
        return float(measure[what](r) / measure[of or what](b))

    checks: list[tuple[str, float, str, float | None]] = []
    if 8 in people:
        checks += [
            ("8 people: the slowest person's first text", ratio(8, "slowest"), "<=", 0.1),
            ("8 people: the slowest person's first token (before the guard's hold-back), vs "
             "embedded's slowest first text", ratio(8, "slowest token", "slowest"), "", None),
            ("8 people: replies/min", ratio(8, "rate"), ">=", 1.0),
            ("8 people: CPU s/reply", ratio(8, "cpu"), "<=", 1.1),
            ("8 people: reply tokens/min (replies differ in length)", ratio(8, "tokens/s"),
             "", None),
            ("8 people: CPU per reply token", ratio(8, "cpu/token"), "", None),
        ]  # fmt: skip
    if 1 in people:
        checks.append(("1 person: the slowest first text", ratio(1, "slowest"), "<=", 1.1))
    lines = [
        f"Targets (issue 19): the default, llama-server --parallel {default}, vs embedded:",
        "",
    ]
    for label, value, op, target in checks:
        if target is None:
            lines.append(f"- {label}: {value:.2f}x (no target)")
            continue
        met = value <= target if op == "<=" else value >= target
        verdict = "met" if met else "NOT met"
        lines.append(f"- {label}: {value:.2f}x (target {op} {target}x): {verdict}")
    return lines
