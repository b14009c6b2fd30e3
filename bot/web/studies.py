"""Human-evaluation studies: their storage and the rater's path through them.

Two kinds, as the ExTES paper ran them:
- `interactive`: 2–3 models (any backend Solace serves) that raters meet as "A", "B", "C" in
  an order drawn at random for each session; the rater talks to each about the same emotional
  issue for at least `min_turns` messages through the real engine, then answers the five
  pairwise questions.
- `rating`: given dialogues (a data-set sample, or a run's dialogue-level generations) rated
  0–3 on five aspects by `raters_per_item` raters each.

Studies hold raters' own chats and data-set dialogues: a rater never sees a bot user's words.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.web.stats import PAIRWISE_ASPECTS, RATING_ASPECTS, RATING_SCALE, model_pairs
from bot.web.store import transaction

KINDS = ("interactive", "rating")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,47}$")
LETTERS = "ABC"
MODEL_BACKENDS = ("echo", "llama-cpp", "openai")
PAPER_MIN_TURNS = 10
MESSAGE_MAX_CHARS = 2000
DEFAULT_SAMPLE_SEED = 21


class StudyError(ValueError):
    """A study that cannot be created, or a step a rater cannot take now."""


@dataclass(frozen=True)
class Study:
    """A study row with its parsed configuration."""

    id: int
    slug: str
    kind: str
    title: str
    config: dict[str, Any]
    state: str

    @property
    def models(self) -> list[dict[str, Any]]:
        """The interactive study's models (admin-facing names and backend settings)."""
        return list(self.config.get("models", []))

    @property
    def model_names(self) -> list[str]:
        """The models' admin-facing names, in the admin's order."""
        return [m["name"] for m in self.models]


def _row_to_study(row: sqlite3.Row) -> Study:
    return Study(row["id"], row["slug"], row["kind"], row["title"], json.loads(row["config"]),
                 row["state"])  # fmt: skip


def get_study(conn: sqlite3.Connection, slug: str) -> Study | None:
    """The study named `slug`, or None."""
    row = conn.execute("SELECT * FROM web_studies WHERE slug = ?", [slug]).fetchone()
    return None if row is None else _row_to_study(row)


def list_studies(conn: sqlite3.Connection, *, open_only: bool) -> list[Study]:
    """Studies, newest first."""
    where = "WHERE state = 'open'" if open_only else ""
    return [_row_to_study(r) for r in
            conn.execute(f"SELECT * FROM web_studies {where} ORDER BY id DESC")]  # fmt: skip


def set_state(conn: sqlite3.Connection, slug: str, state: str) -> None:
    """Open or close a study (closed: raters can no longer add to it)."""
    if state not in ("open", "closed"):
        raise StudyError("a study is open or closed")
    with transaction(conn):
        conn.execute("UPDATE web_studies SET state = ? WHERE slug = ?", [state, slug])


def check_model(spec: dict[str, Any]) -> dict[str, Any]:
    """A model of an interactive study, validated: name, backend and its settings."""
    name = str(spec.get("name") or "").strip()[:60]
    backend = str(spec.get("backend") or "").strip()
    if not name:
        raise StudyError("every model needs a name (only admins see it)")
    if backend not in MODEL_BACKENDS:
        raise StudyError(f"{name}: the backend is one of {', '.join(MODEL_BACKENDS)}")
    out: dict[str, Any] = {"name": name, "backend": backend}
    for key in ("path", "lora_path"):
        value = str(spec.get(key) or "").strip()
        if value:
            if backend != "llama-cpp":
                raise StudyError(f"{name}: a model file is for the llama-cpp backend")
            if not Path(value).expanduser().is_file():
                raise StudyError(f"{name}: {value} is not a file on the server")
            out[key] = str(Path(value).expanduser())
    if backend == "llama-cpp":
        out["default_adapter"] = bool(spec.get("default_adapter", True))
    if backend == "openai":
        for key in ("base_url", "model"):
            value = str(spec.get(key) or "").strip()
            if not value:
                raise StudyError(f"{name}: the openai backend needs {key}")
            out[key] = value
    return out


def _insert_study(conn: sqlite3.Connection, slug: str, kind: str, title: str,
                  config: dict[str, Any], by: int | None, now: float) -> int:  # fmt: skip
    slug = slug.strip().lower()
    if not SLUG_RE.match(slug):
        raise StudyError("the short name is 2-48 characters: a-z, 0-9 and '-'")
    title = title.strip()[:200] or slug
    try:
        cursor = conn.execute(
            "INSERT INTO web_studies (slug, kind, title, config, state, created_by, created_at) "
            "VALUES (?, ?, ?, ?, 'open', ?, ?)", [slug, kind, title, json.dumps(config), by, now]
        )  # fmt: skip
    except sqlite3.IntegrityError:
        raise StudyError(f"a study named {slug!r} already exists") from None
    return int(cursor.lastrowid or 0)


def create_interactive(
    conn: sqlite3.Connection, slug: str, title: str, models: list[dict[str, Any]],
    issues: list[str], min_turns: int, by: int | None, now: float,
) -> int:  # fmt: skip
    """Create an interactive (A/B/C) study; StudyError names what is wrong."""
    checked = [check_model(m) for m in models]
    if not 2 <= len(checked) <= 3:
        raise StudyError("an interactive study compares 2 or 3 models")
    if len({m["name"] for m in checked}) != len(checked):
        raise StudyError("give each model a different name")
    issues = [i.strip()[:300] for i in issues if i.strip()]
    if not issues:
        raise StudyError("list at least one emotional issue for raters to talk about")
    if not 1 <= min_turns <= 100:
        raise StudyError("the minimum number of turns is between 1 and 100")
    config = {"models": checked, "issues": issues, "min_turns": min_turns}
    with transaction(conn):
        return _insert_study(conn, slug, "interactive", title, config, by, now)


def create_rating(
    conn: sqlite3.Connection, slug: str, title: str,
    items: list[tuple[str, str, list[tuple[str, str]]]], raters_per_item: int,
    by: int | None, now: float,
) -> int:  # fmt: skip
    """Create a rating study from (source, dialogue id, [(role, text)]) items."""
    if not items:
        raise StudyError("the sources gave no dialogues")
    if not 2 <= raters_per_item <= 20:
        raise StudyError("Fleiss' kappa needs 2 to 20 raters per dialogue")
    sources = sorted({s for s, _, _ in items}, key=[s for s, _, _ in items].index)
    config = {"raters_per_item": raters_per_item, "sources": sources}
    with transaction(conn):
        study_id = _insert_study(conn, slug, "rating", title, config, by, now)
        conn.executemany(
            "INSERT INTO web_rating_items (study_id, source, dialogue_id, dialogue, position) "
            "VALUES (?, ?, ?, ?, ?)",
            [(study_id, source, did, json.dumps(turns), i)
             for i, (source, did, turns) in enumerate(items)],
        )  # fmt: skip
    return study_id


# --- dialogues to rate -----------------------------------------------------------------------


def sample_dialogues(spec: str, count: int, seed: int = DEFAULT_SAMPLE_SEED) -> list[Any]:
    """`count` dialogues drawn from a data spec (esconv:test, a file …) or a run directory of
    dialogue-level generations (`run:PATH`); items as (source, dialogue id, turns)."""
    spec = spec.strip()
    if count < 1:
        raise StudyError("draw at least one dialogue from each source")
    if spec.startswith("run:"):
        dialogues = run_dialogues(Path(spec.removeprefix("run:")).expanduser())
    else:
        from dialogue.datasets import load_spec

        try:
            loaded = load_spec(spec).dialogues
        except ValueError as exc:
            raise StudyError(str(exc)) from exc
        dialogues = [(d.id, [(t.role, t.text) for t in d.turns]) for d in loaded]
    ordered = sorted(dialogues, key=lambda d: d[0])
    random.Random(seed).shuffle(ordered)
    return [(spec, did, turns) for did, turns in ordered[:count]]


def run_dialogues(run: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """The dialogues a run generated at dialogue level (`solace eval generate --mode dialogue`):
    each supporter turn replaced by the model's reply, seeker turns as in the data set."""
    path = run / "generations.jsonl"
    if not path.is_file():
        raise StudyError(f"{path} not found: a run directory of `solace eval generate`")
    rows: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict) or not row.get("generated"):
            continue
        if row.get("mode") != "dialogue":
            raise StudyError(f"{run} is a turn-level run; rate a run made with --mode dialogue")
        rows.setdefault(str(row["dialogue_id"]), []).append(row)
    out = []
    for did, parts in rows.items():
        turns: list[tuple[str, str]] = []
        for row in sorted(parts, key=lambda r: int(r["turn_index"])):
            turns += [("user", str(t)) for t in row.get("seeker_turns", [])]
            turns.append(("assistant", str(row["generated"])))
        out.append((did, turns))
    return out


# --- an interactive session ------------------------------------------------------------------


def active_session(conn: sqlite3.Connection, study_id: int, account_id: int) -> sqlite3.Row | None:
    """The rater's unfinished session of this study, if any."""
    return conn.execute(
        "SELECT * FROM web_eval_sessions WHERE study_id = ? AND account_id = ? AND "
        "finished_at IS NULL ORDER BY id DESC LIMIT 1", [study_id, account_id]
    ).fetchone()  # fmt: skip


def start_session(
    conn: sqlite3.Connection, study: Study, account_id: int, now: float, rng: random.Random
) -> int:
    """A new session: the least-used issue, and the models in a fresh random order."""
    if study.state != "open":
        raise StudyError("this study is closed")
    used = dict(conn.execute(
        "SELECT issue, COUNT(*) FROM web_eval_sessions WHERE study_id = ? GROUP BY issue",
        [study.id]).fetchall())  # fmt: skip
    issues = study.config["issues"]
    fewest = min(used.get(i, 0) for i in issues)
    issue = rng.choice([i for i in issues if used.get(i, 0) == fewest])
    order = list(range(len(study.models)))
    rng.shuffle(order)
    with transaction(conn):
        cursor = conn.execute(
            "INSERT INTO web_eval_sessions (study_id, account_id, issue, model_order, position, "
            "created_at) VALUES (?, ?, ?, ?, 0, ?)",
            [study.id, account_id, issue, json.dumps(order), now],
        )
    return int(cursor.lastrowid or 0)


def session_row(conn: sqlite3.Connection, session_id: int, account_id: int) -> sqlite3.Row | None:
    """A session of this rater (None for someone else's)."""
    return conn.execute(
        "SELECT * FROM web_eval_sessions WHERE id = ? AND account_id = ?", [session_id, account_id]
    ).fetchone()


def session_turns(conn: sqlite3.Connection, session_id: int, model_index: int) -> list[Any]:
    """The rater's conversation with one model, oldest first."""
    return conn.execute(
        "SELECT role, text, event, created_at FROM web_eval_turns WHERE session_id = ? AND "
        "model_index = ? ORDER BY id", [session_id, model_index]
    ).fetchall()  # fmt: skip


def add_exchange(conn: sqlite3.Connection, session_id: int, model_index: int, text: str,
                 reply: str, event: str | None, now: float) -> None:  # fmt: skip
    """Store one message and the model's reply (with the safety event it raised, if any)."""
    with transaction(conn):
        conn.executemany(
            "INSERT INTO web_eval_turns (session_id, model_index, role, text, event, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(session_id, model_index, "user", text, event, now),
             (session_id, model_index, "assistant", reply, event, now)],
        )  # fmt: skip


def rater_turns(conn: sqlite3.Connection, session_id: int, model_index: int) -> int:
    """How many messages the rater has sent this model."""
    return int(conn.execute(
        "SELECT COUNT(*) FROM web_eval_turns WHERE session_id = ? AND model_index = ? AND "
        "role = 'user'", [session_id, model_index]).fetchone()[0])  # fmt: skip


def advance(conn: sqlite3.Connection, session: sqlite3.Row, study: Study) -> None:
    """Move on to the next model once the rater has talked to this one long enough."""
    order = json.loads(session["model_order"])
    position = session["position"]
    if position >= len(order):
        raise StudyError("every model has been talked to; answer the questions")
    if rater_turns(conn, session["id"], order[position]) < study.config["min_turns"]:
        raise StudyError(f"talk to {LETTERS[position]} for at least "
                         f"{study.config['min_turns']} messages first")  # fmt: skip
    with transaction(conn):
        conn.execute("UPDATE web_eval_sessions SET position = position + 1 WHERE id = ?",
                     [session["id"]])  # fmt: skip


def questions(order: list[int]) -> list[dict[str, Any]]:
    """The pairwise questions of a session: one block per pair of letters."""
    blocks = []
    for p, q in model_pairs(len(order)):
        blocks.append({"p": p, "q": q, "left": LETTERS[p], "right": LETTERS[q],
                       "field": f"{LETTERS[p]}{LETTERS[q]}"})  # fmt: skip
    return blocks


def save_answers(
    conn: sqlite3.Connection, session: sqlite3.Row, choices: dict[str, str], now: float
) -> None:
    """Store the rater's choices {"AB:fluency": "A"|"B"|"tie", …}; every question must be
    answered. Answers are kept per model pair from the lower model index's point of view."""
    order = json.loads(session["model_order"])
    if session["position"] < len(order):
        raise StudyError("talk to every model before answering")
    rows = []
    for block in questions(order):
        for aspect in PAIRWISE_ASPECTS:
            choice = choices.get(f"{block['field']}:{aspect}")
            if choice not in (block["left"], block["right"], "tie"):
                raise StudyError("answer every question (choose a side or 'about the same')")
            a, b = order[block["p"]], order[block["q"]]
            winner = {block["left"]: a, block["right"]: b}.get(choice)
            lo, hi = min(a, b), max(a, b)
            outcome = "tie" if winner is None else ("win" if winner == lo else "loss")
            rows.append((session["study_id"], session["id"], session["account_id"], lo, hi,
                         aspect, outcome, now))  # fmt: skip
    with transaction(conn):
        conn.executemany(
            "INSERT OR REPLACE INTO web_eval_answers (study_id, session_id, account_id, model_a, "
            "model_b, aspect, outcome, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
        )  # fmt: skip
        conn.execute("UPDATE web_eval_sessions SET finished_at = ? WHERE id = ?",
                     [now, session["id"]])  # fmt: skip


# --- rating dialogues ------------------------------------------------------------------------


def next_item(conn: sqlite3.Connection, study: Study, account_id: int) -> sqlite3.Row | None:
    """The next dialogue for this rater: one they have not rated that still needs raters,
    finishing half-rated dialogues first (so κ has complete items early)."""
    return conn.execute(
        "SELECT i.*, (SELECT COUNT(DISTINCT account_id) FROM web_ratings r WHERE r.item_id = i.id)"
        " AS raters FROM web_rating_items i WHERE i.study_id = ? AND NOT EXISTS (SELECT 1 FROM "
        "web_ratings r WHERE r.item_id = i.id AND r.account_id = ?) AND (SELECT COUNT(DISTINCT "
        "account_id) FROM web_ratings r WHERE r.item_id = i.id) < ? "
        "ORDER BY raters DESC, i.position LIMIT 1",
        [study.id, account_id, study.config["raters_per_item"]],
    ).fetchone()


def save_rating(conn: sqlite3.Connection, study: Study, item_id: int, account_id: int,
                scores: dict[str, str], now: float) -> None:  # fmt: skip
    """Store one rater's 0–3 scores of one dialogue (every aspect required)."""
    item = conn.execute("SELECT id FROM web_rating_items WHERE id = ? AND study_id = ?",
                        [item_id, study.id]).fetchone()  # fmt: skip
    if item is None:
        raise StudyError("no such dialogue in this study")
    values = {}
    for aspect in RATING_ASPECTS:
        raw = scores.get(aspect, "")
        if not raw.isdigit() or int(raw) not in RATING_SCALE:
            raise StudyError("rate every aspect from 0 to 3")
        values[aspect] = int(raw)
    with transaction(conn):
        conn.executemany(
            "INSERT OR REPLACE INTO web_ratings (study_id, item_id, account_id, aspect, score, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(study.id, item_id, account_id, a, s, now) for a, s in values.items()],
        )


def rating_progress(conn: sqlite3.Connection, study: Study, account_id: int) -> dict[str, int]:
    """Dialogues in the study, rated by this rater, and fully rated."""
    need = study.config["raters_per_item"]
    row = conn.execute(
        "SELECT COUNT(*), SUM(mine > 0), SUM(raters >= ?) FROM (SELECT i.id, "
        "(SELECT COUNT(DISTINCT account_id) FROM web_ratings r WHERE r.item_id = i.id) AS raters,"
        " (SELECT COUNT(*) FROM web_ratings r WHERE r.item_id = i.id AND r.account_id = ?) AS mine"
        " FROM web_rating_items i WHERE i.study_id = ?)", [need, account_id, study.id]
    ).fetchone()  # fmt: skip
    return {"items": row[0] or 0, "mine": row[1] or 0, "complete": row[2] or 0}
