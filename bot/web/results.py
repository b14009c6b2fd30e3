"""A study's results, for the results page and `solace eval human STUDY` (same numbers)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from typing import Any

from bot.web.stats import (
    OUTCOMES,
    PAIRWISE_ASPECTS,
    PAPER_TABLE4,
    PAPER_TABLE9,
    RATING_ASPECTS,
    pairwise_table,
    rating_table,
)
from bot.web.studies import PAPER_MIN_TURNS, Study


def interactive_results(conn: sqlite3.Connection, study: Study) -> dict[str, Any]:
    """Table 9 for an interactive study, with counts of sessions, raters and safety events."""
    answers = [
        (r[0], r[1], r[2], r[3])
        for r in conn.execute(
            "SELECT model_a, model_b, aspect, outcome FROM web_eval_answers WHERE study_id = ?",
            [study.id],
        )
    ]
    sessions = conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT account_id) FROM web_eval_sessions WHERE study_id = ? "
        "AND finished_at IS NOT NULL", [study.id]
    ).fetchone()  # fmt: skip
    per_model = conn.execute(
        "SELECT t.model_index, COUNT(*), SUM(t.role = 'user'), COUNT(DISTINCT t.session_id) "
        "FROM web_eval_turns t JOIN web_eval_sessions s ON s.id = t.session_id "
        "WHERE s.study_id = ? GROUP BY t.model_index", [study.id]
    ).fetchall()  # fmt: skip
    events: dict[int, Counter[str]] = {}
    for index, event in conn.execute(
        "SELECT t.model_index, t.event FROM web_eval_turns t JOIN web_eval_sessions s ON "
        "s.id = t.session_id WHERE s.study_id = ? AND t.role = 'assistant' AND t.event IS NOT "
        "NULL", [study.id]
    ):  # fmt: skip
        events.setdefault(index, Counter())[event.split(":")[0]] += 1
    models = []
    for i, m in enumerate(study.models):
        row = next((r for r in per_model if r[0] == i), None)
        conversations = row[3] if row else 0
        models.append({
            "name": m["name"], "backend": _describe(m), "conversations": conversations,
            "mean_turns": (row[2] / conversations) if row and conversations else None,
            "events": dict(events.get(i, {})),
        })  # fmt: skip
    return {
        "study": study, "table": pairwise_table(answers, study.model_names),
        "sessions": sessions[0], "raters": sessions[1], "models": models,
        "min_turns": study.config["min_turns"], "paper_min_turns": PAPER_MIN_TURNS,
        "paper": PAPER_TABLE9, "aspects": PAIRWISE_ASPECTS, "outcomes": OUTCOMES,
    }  # fmt: skip


def rating_results(conn: sqlite3.Connection, study: Study) -> dict[str, Any]:
    """Table 4 for a rating study: mean per aspect and source, Fleiss' κ per aspect."""
    ratings = [
        (r[0], r[1], r[2], r[3])
        for r in conn.execute(
            "SELECT r.item_id, i.source, r.aspect, r.score FROM web_ratings r JOIN "
            "web_rating_items i ON i.id = r.item_id WHERE r.study_id = ?", [study.id])
    ]  # fmt: skip
    raters = conn.execute(
        "SELECT COUNT(DISTINCT account_id) FROM web_ratings WHERE study_id = ?", [study.id]
    ).fetchone()[0]
    items = conn.execute("SELECT COUNT(*) FROM web_rating_items WHERE study_id = ?",
                         [study.id]).fetchone()[0]  # fmt: skip
    return {
        "study": study, "sources": study.config["sources"],
        "table": rating_table(ratings, study.config["sources"]), "raters": raters,
        "items": items, "raters_per_item": study.config["raters_per_item"],
        "paper": PAPER_TABLE4, "aspects": RATING_ASPECTS,
    }  # fmt: skip


def study_results(conn: sqlite3.Connection, study: Study) -> dict[str, Any]:
    """Whichever table the study's kind calls for."""
    if study.kind == "interactive":
        return interactive_results(conn, study)
    return rating_results(conn, study)


def _describe(model: dict[str, Any]) -> str:
    backend = model["backend"]
    if backend == "llama-cpp":
        base = model.get("path") or "embedded SmolLM2-135M-Instruct"
        lora = model.get("lora_path") or (
            "Solace's default adapter" if model.get("default_adapter") and not model.get("path")
            else None)  # fmt: skip
        return f"llama-cpp: {base}" + (f" + {lora}" if lora else "")
    if backend == "openai":
        return f"openai: {model['model']} at {model['base_url']}"
    return "echo (repeats the message; plumbing only)"


def counted(n: int, word: str) -> str:
    """ "1 rater", "2 raters" (regular English plurals only)."""
    return f"{n:,} {word if n == 1 else word + 's'}"


def _pct(value: float) -> str:
    return f"{value:.0f}"


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables (the CLI prints this)."""
    study: Study = results["study"]
    lines = [f"# {study.title} ({study.slug}, {study.kind} study)", ""]
    if study.kind == "interactive":
        lines += _markdown_pairwise(results)
    else:
        lines += _markdown_ratings(results)
    return "\n".join(lines) + "\n"


def _markdown_pairwise(r: dict[str, Any]) -> list[str]:
    table = r["table"]
    pairs = table["pairs"]
    lines = [
        f"{counted(r['sessions'], 'finished session')} by {counted(r['raters'], 'rater')}; at "
        f"least {counted(r['min_turns'], 'message')} per model (the paper: "
        f"{r['paper_min_turns']}). Win / tie / loss of the first "
        "model of each pair, % of sessions, with 95% bootstrap intervals.",
        "",
        "| aspect | " + " | ".join(p["label"] for p in pairs) + " |",
        "| --- |" + " --- |" * len(pairs),
    ]
    for aspect in r["aspects"]:
        cells = []
        for cell in table["cells"][aspect]:
            ci = cell["ci"]
            cells.append(
                " / ".join(_pct(cell[o]) for o in r["outcomes"])
                + " ("
                + "; ".join(f"{_pct(ci[o][0])}–{_pct(ci[o][1])}" for o in r["outcomes"])
                + f") n={cell['n']}"
            )
        lines.append(f"| {aspect.capitalize()} | " + " | ".join(cells) + " |")
    paper = r["paper"]
    lines += ["", f"The paper's Table 9 ({paper['model']}; {paper['setting']}):", "",
              "| aspect | " + " | ".join(f"vs {o}" for o in paper["opponents"]) + " |",
              "| --- | --- | --- |"]  # fmt: skip
    for aspect, values in paper["rows"].items():
        lines.append(f"| {aspect.capitalize()} | " + " | ".join(
            " / ".join(str(v) for v in trio) + " %" for trio in values) + " |")  # fmt: skip
    lines += ["", "| model (admin's name) | backend | conversations | mean messages | "
              "safety events |", "| --- | --- | ---: | ---: | --- |"]  # fmt: skip
    for m in r["models"]:
        mean = "—" if m["mean_turns"] is None else f"{m['mean_turns']:.1f}"
        ev = ", ".join(f"{k} {v}" for k, v in sorted(m["events"].items())) or "none"
        lines.append(f"| {m['name']} | {m['backend']} | {m['conversations']} | {mean} | {ev} |")
    return lines


def _markdown_ratings(r: dict[str, Any]) -> list[str]:
    sources = r["sources"]
    lines = [
        f"{counted(r['items'], 'dialogue')}, {counted(r['raters'], 'rater')} "
        f"({r['raters_per_item']} wanted per dialogue); mean score 0–3 per source, Fleiss' κ per aspect over dialogues with at "
        "least two ratings.",
        "",
        "| aspect | " + " | ".join(sources) + " | κ | dialogues |",
        "| --- |" + " ---: |" * (len(sources) + 2),
    ]
    for aspect in r["aspects"]:
        row = r["table"][aspect]
        means = [
            "—" if row["sources"][s]["mean"] is None else f"{row['sources'][s]['mean']:.2f}"
            for s in sources
        ]
        kappa = "—" if row["kappa"] is None else f"{row['kappa']:.2f}"
        lines.append(f"| {aspect.capitalize()} | " + " | ".join(means) +
                     f" | {kappa} | {row['items']} |")  # fmt: skip
    paper = r["paper"]
    lines += ["", "The paper's Table 4 (ExTES vs its seed dialogues):", "",
              f"| aspect | {paper['sources'][0]} | {paper['sources'][1]} | κ |",
              "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for aspect, (a, b, k) in paper["rows"].items():
        lines.append(f"| {aspect.capitalize()} | {a:.2f} | {b:.2f} | {k:.2f} |")
    return lines
