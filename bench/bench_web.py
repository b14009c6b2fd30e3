"""Web console benchmark: the queue page with 10,000 flagged conversations and the results pages
with 1,000 study answers, rendered by the real app (login, SQL, ordering, template), against a
plain JSON dump of the same rows in the same run (quick: 2,000 conversations, 200 answers).

Each page is requested several times through Starlette's test client (in-process HTTP); the
median is reported, and the baseline is the median of the same number of dumps.
"""

from __future__ import annotations

import functools
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.bot.audit.audit_data and tests.bot.web.helpers build the data
    sys.path.insert(0, str(ROOT))

REPEATS = 5
DAY = 86_400.0


def _median_seconds(fn: Callable[[], Any], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _dump(db: Path, queries: dict[str, str]) -> Callable[[], str]:
    from bot.web.store import connection

    def run() -> str:
        with connection(db) as conn:
            data = {name: [dict(r) for r in conn.execute(sql)] for name, sql in queries.items()}
        return json.dumps(data)

    return run


def _studies(db: Path, sessions: int, items: int, now: float) -> tuple[int, int]:
    """An A/B study with `sessions` × 5 answers and a rating study with `items` × 2 raters × 5
    ratings, written straight into the tables."""
    from bot.web import studies
    from bot.web.stats import PAIRWISE_ASPECTS, RATING_ASPECTS
    from bot.web.store import connection, transaction

    rng = random.Random(5)
    with connection(db) as conn:
        ids = dict(conn.execute("SELECT name, id FROM web_accounts").fetchall())
        models = [{"name": "candidate", "backend": "echo"}, {"name": "baseline", "backend": "echo"}]
        ab = studies.create_interactive(conn, "bench-ab", "Bench A/B", models, ["grief"], 1,
                                        ids["ada"], now)  # fmt: skip
        dialogue = [("user", "I feel low."), ("assistant", "I'm sorry. What happened?")]
        items_ = [("esconv:test", f"d{i}", dialogue) for i in range(items // 2)]
        items_ += [("run:bench", f"r{i}", dialogue) for i in range(items - items // 2)]
        rating = studies.create_rating(conn, "bench-rating", "Bench ratings", items_, 2,
                                       ids["ada"], now)  # fmt: skip
        with transaction(conn):
            for _ in range(sessions):
                cur = conn.execute(
                    "INSERT INTO web_eval_sessions (study_id, account_id, issue, model_order, "
                    "position, created_at, finished_at) VALUES (?, ?, 'grief', '[0, 1]', 2, ?, ?)",
                    [ab, ids["rita"], now, now],
                )
                conn.executemany(
                    "INSERT INTO web_eval_answers (study_id, session_id, account_id, model_a, "
                    "model_b, aspect, outcome, created_at) VALUES (?, ?, ?, 0, 1, ?, ?, ?)",
                    [(ab, cur.lastrowid, ids["rita"], a, rng.choice(("win", "tie", "loss")), now)
                     for a in PAIRWISE_ASPECTS],
                )  # fmt: skip
            item_ids = [r[0] for r in conn.execute(
                "SELECT id FROM web_rating_items WHERE study_id = ?", [rating])]  # fmt: skip
            conn.executemany(
                "INSERT INTO web_ratings (study_id, item_id, account_id, aspect, score, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(rating, i, ids[who], a, rng.randint(1, 3), now) for i in item_ids
                 for who in ("rita", "ravi") for a in RATING_ASPECTS],
            )  # fmt: skip
    return sessions * len(PAIRWISE_ASPECTS), items * 2 * len(RATING_ASPECTS)


def run(quick: bool) -> str:
    """The Markdown section for BENCHMARKS.md."""
    from starlette.testclient import TestClient

    from bot.web.app import build_app
    from tests.bot.web.helpers import login, make_console

    n = 2_000 if quick else 10_000
    sessions, items = (40, 20) if quick else (200, 100)
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        prep = time.perf_counter()
        console = make_console(Path(tmp), n, now=now, crisis_share=1.0)
        answers, ratings = _studies(console.db, sessions, items, now)
        prep = time.perf_counter() - prep
        app = build_app(console.settings, console.db)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            login(client, "ada")
            first = client.get("/queue")
            assert first.status_code == 200 and "crisis screen" in first.text
            flagged = first.text.count('class="item')
            pages = {
                "queue": ("/queue", _dump(console.db, {
                    "events": "SELECT conversation_id, user_key, kind, category, detail, "
                              "created_at FROM events",
                    "judgements": "SELECT conversation_id, user_key, appropriateness, judged_at "
                                  "FROM audit_judgements",
                    "reviewable": "SELECT conversation_id FROM audit_conversations",
                    "states": "SELECT * FROM web_queue"})),
                "results (A/B, Table 9)": ("/studies/bench-ab/results", _dump(console.db, {
                    "answers": "SELECT model_a, model_b, aspect, outcome FROM web_eval_answers "
                               "WHERE study_id = 1"})),
                "results (ratings, Table 4)": ("/studies/bench-rating/results", _dump(
                    console.db, {"ratings": "SELECT r.item_id, i.source, r.aspect, r.score FROM "
                                 "web_ratings r JOIN web_rating_items i ON i.id = r.item_id"})),
            }  # fmt: skip
            rows = []
            for name, (path, dump) in pages.items():
                assert client.get(path).status_code == 200
                page_s = _median_seconds(functools.partial(client.get, path))
                dump_s = _median_seconds(dump)
                rows.append(f"| {name} | {page_s * 1000:.0f} | {dump_s * 1000:.0f} | "
                            f"**{page_s / dump_s:.2f}x** |")  # fmt: skip
    return "\n".join([
        "## Web console (bench/bench_web.py)",
        "",
        f"{n:,} flagged conversations (every one with a crisis event, snapshotted into the audit "
        f"store), an A/B study with {answers:,} answers and a rating study with {ratings:,} "
        f"ratings; set-up {prep:.0f} s. Median of {REPEATS} requests through the real app "
        "(signed-cookie login, SQL, most-serious-first ordering, a 50-row page, Jinja2) vs the "
        "median of as many plain JSON dumps of the rows the page reads.",
        "",
        "| page | page ms | JSON dump ms | page / dump |",
        "| --- | ---: | ---: | ---: |",
        *rows,
        "",
        f"The queue page lists {flagged} of the {n:,} conversations (one page); its counts cover "
        "all of them.",
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
