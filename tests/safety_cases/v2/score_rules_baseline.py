"""One-off: score the rules-only crisis screen on the v2 case files, as a new user would.

Every message goes through `solace safety screen --level` (one message per line on stdin), so
the figures are what the command-line tool answers, not a private code path. Prints Markdown.

    PYTHONPATH=$PWD .venv/bin/python tests/safety_cases/v2/score_rules_baseline.py heldout

Scoring convention (README.md of this folder): a `crisis` case is caught when the screen says
crisis; a `concern` case is flagged when it says concern or crisis; a `none` case is a false
positive when the screen says crisis (any flag is reported too). 95% Wilson score intervals.
It prints no message text and no list of misses: the held-out set is scored, not studied.
This script is the record of how the baseline was measured; `solace safety evaluate` should
learn this format when the semantic layer lands, and then this file can go.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
CATEGORIES = ("suicide", "self_harm", "abuse", "harm_to_others", "medical_emergency")
Z95 = 1.959963984540054


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    denom = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def fmt(k: int, n: int) -> str:
    if n == 0:
        return "-"
    lo, hi = wilson(k, n)
    return f"{k / n:.2f} ({k}/{n}) [{lo:.2f}, {hi:.2f}]"


def screen(texts: list[str]) -> list[dict]:
    """Run `solace safety screen --level` on the texts; one JSON result per text."""
    for text in texts:
        if "\n" in text or "\r" in text:
            raise ValueError("a case text contains a line break; the CLI reads one per line")
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "safety", "screen", "--level"],
        input="".join(t + "\n" for t in texts),
        capture_output=True,
        text=True,
        check=True,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if len(results) != len(texts):
        raise RuntimeError(f"{len(texts)} messages in, {len(results)} results out")
    return results


def single_report(rows: list[dict], results: list[dict]) -> list[str]:
    out: list[str] = []
    caught: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    cat_ok = [0, 0]
    for row, res in zip(rows, results, strict=True):
        if row["level"] != "crisis":
            continue
        hit = res["level"] == "crisis"
        for key in ((row["tier"], row["category"]), (row["tier"], "all"), ("all", row["category"])):
            caught[key][0] += hit
            caught[key][1] += 1
        caught[("all", "all")][0] += hit
        caught[("all", "all")][1] += 1
        if hit:
            cat_ok[0] += res["category"] == row["category"]
            cat_ok[1] += 1
    out += [
        "Recall on `crisis` cases (caught = the screen says crisis), 95% Wilson interval:",
        "",
        "| category | explicit | indirect | both tiers |",
        "| --- | --- | --- | --- |",
    ]
    for cat in (*CATEGORIES, "all"):
        cells = [fmt(*caught[(tier, cat)]) for tier in ("explicit", "indirect", "all")]
        out.append(f"| {cat} | " + " | ".join(cells) + " |")
    out += ["", f"Of the caught crisis cases, category as labelled: {fmt(*cat_ok)}", ""]

    concern = [
        (row, res) for row, res in zip(rows, results, strict=True) if row["level"] == "concern"
    ]
    k_flag = sum(res["level"] in ("concern", "crisis") for _, res in concern)
    k_conc = sum(res["level"] == "concern" for _, res in concern)
    k_cris = sum(res["level"] == "crisis" for _, res in concern)
    out += [
        f"`concern` cases ({len(concern)}): flagged at all {fmt(k_flag, len(concern))}; "
        f"as concern {k_conc}, as crisis {k_cris}, missed {len(concern) - k_flag}.",
        "",
        "| none cases | FPR (screen says crisis) | any flag (concern or crisis) |",
        "| --- | --- | --- |",
    ]
    for tier in ("control", "distress"):
        sel = [res for row, res in zip(rows, results, strict=True) if row["tier"] == tier]
        fp = sum(res["level"] == "crisis" for res in sel)
        flag = sum(res["level"] != "none" for res in sel)
        out.append(f"| {tier} | {fmt(fp, len(sel))} | {fmt(flag, len(sel))} |")
    return out


def conversation_report(rows: list[dict]) -> list[str]:
    final = screen([r["text"] for r in rows])
    joined = screen([" . ".join([*r["turns"], r["text"]]) for r in rows])
    turn_texts = [t for r in rows for t in r["turns"]]
    turn_results = iter(screen(turn_texts))
    earlier = [[next(turn_results) for _ in r["turns"]] for r in rows]

    def tally(select, results) -> str:
        sel = [res for row, res in zip(rows, results, strict=True) if select(row)]
        return f"{sum(res['level'] == 'crisis' for res in sel)}/{len(sel)}"

    def any_flag(select, results) -> str:
        sel = [res for row, res in zip(rows, results, strict=True) if select(row)]
        return f"{sum(res['level'] != 'none' for res in sel)}/{len(sel)}"

    def positive(row: dict) -> bool:
        return row["level"] == "crisis"

    def negative(row: dict) -> bool:
        return row["level"] == "none"

    earlier_any = [
        {
            "level": "crisis"
            if any(x["level"] == "crisis" for x in e)
            else ("concern" if any(x["level"] != "none" for x in e) else "none")
        }
        for e in earlier
    ]
    n_concern = sum(r["level"] == "concern" for r in rows)
    return [
        "| what is screened | crisis cases said crisis | none cases said crisis | none cases flagged at all |",
        "| --- | --- | --- | --- |",
        f"| final message alone (what the bot does now) | {tally(positive, final)} | {tally(negative, final)} | {any_flag(negative, final)} |",
        f"| any earlier turn alone | {tally(positive, earlier_any)} | {tally(negative, earlier_any)} | {any_flag(negative, earlier_any)} |",
        f"| earlier turns + final joined as one message | {tally(positive, joined)} | {tally(negative, joined)} | {any_flag(negative, joined)} |",
        "",
        f"(`concern` conversation cases: {n_concern}; final message flagged: "
        f"{any_flag(lambda r: r['level'] == 'concern', final)}.)",
    ]


def main(which: str) -> None:
    rows = [json.loads(line) for line in (HERE / f"{which}.jsonl").open(encoding="utf-8")]
    results = screen([r["text"] for r in rows])
    lines = [f"#### `{which}.jsonl` ({len(rows)} messages)", "", *single_report(rows, results), ""]
    conv = [
        json.loads(line) for line in (HERE / f"{which}_conversations.jsonl").open(encoding="utf-8")
    ]
    lines += [
        f"#### `{which}_conversations.jsonl` ({len(conv)} cases)",
        "",
        *conversation_report(conv),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
