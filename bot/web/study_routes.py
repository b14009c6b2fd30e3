"""Raters' pages: their studies, talking to models A/B/C, the pairwise questions, and rating
given dialogues 0–3."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.web import studies
from bot.web.http import ctx_of, db, flash, page, redirect, render
from bot.web.results import counted
from bot.web.stats import PAIRWISE_ASPECTS, QUESTIONS, RATING_ASPECTS, RATING_HELP, RATING_SCALE

logger = logging.getLogger(__name__)

RATERS = ("rater", "admin")
_rng = random.SystemRandom()  # the A/B/C order must not be predictable


def _overview(conn: Any, account_id: int, admin: bool) -> list[dict[str, Any]]:
    rows = []
    for study in studies.list_studies(conn, open_only=not admin):
        if study.kind == "interactive":
            done = conn.execute(
                "SELECT COUNT(*) FROM web_eval_sessions WHERE study_id = ? AND account_id = ? AND "
                "finished_at IS NOT NULL", [study.id, account_id]).fetchone()[0]  # fmt: skip
            progress = f"{counted(done, 'conversation set')} finished"
        else:
            p = studies.rating_progress(conn, study, account_id)
            progress = f"{p['mine']} of {counted(p['items'], 'dialogue')} rated by you"
        rows.append({"study": study, "progress": progress})
    return rows


@page("studies.view", RATERS)
async def studies_page(request: Request) -> Response:
    """The open studies and how far this rater is."""
    account = request.state.account
    rows = await db(request, _overview, account.id, account.is_admin)
    return render(request, "studies.html", rows=rows)


async def _study_or_404(request: Request) -> studies.Study | None:
    return await db(request, studies.get_study, request.path_params["slug"])  # type: ignore[no-any-return]


def _missing(request: Request) -> Response:
    return render(request, "error.html", status=404, title="No such study",
                  message="This study does not exist.")  # fmt: skip


@page("study.view", RATERS, target="slug")
async def study_page(request: Request) -> Response:
    """An interactive study: continue or start a session. A rating study: the next dialogue."""
    study = await _study_or_404(request)
    if study is None:
        return _missing(request)
    account = request.state.account
    if study.kind == "interactive":
        active = await db(request, studies.active_session, study.id, account.id)
        if active is not None:
            return redirect(f"/studies/{study.slug}/sessions/{active['id']}")
        return render(request, "study_start.html", study=study)
    item = await db(request, studies.next_item, study, account.id)
    progress = await db(request, studies.rating_progress, study, account.id)
    dialogue = json.loads(item["dialogue"]) if item is not None else []
    return render(request, "rate.html", study=study, item=item, dialogue=dialogue,
                  progress=progress, aspects=RATING_ASPECTS, help=RATING_HELP,
                  scale=RATING_SCALE)  # fmt: skip


@page("study.start", RATERS, target="slug")
async def study_start(request: Request) -> Response:
    """Start a session: an issue and a random A/B/C order."""
    study = await _study_or_404(request)
    if study is None or study.kind != "interactive":
        return _missing(request)
    try:
        sid = await db(request, studies.start_session, study, request.state.account.id,
                       ctx_of(request).clock(), _rng)  # fmt: skip
    except studies.StudyError as exc:
        flash(request, str(exc))
        return redirect("/studies")
    return redirect(f"/studies/{study.slug}/sessions/{sid}")


async def _session(request: Request) -> tuple[studies.Study | None, Any]:
    study = await _study_or_404(request)
    try:
        sid = int(request.path_params["sid"])
    except ValueError:
        return None, None
    session = await db(request, studies.session_row, sid, request.state.account.id)
    if study is None or session is None or session["study_id"] != study.id:
        return None, None
    return study, session


@page("session.view", RATERS, target="slug")
async def session_page(request: Request) -> Response:
    """Talk to the current model, or answer the questions once every model is done."""
    study, session = await _session(request)
    if study is None:
        return _missing(request)
    order = json.loads(session["model_order"])
    position = session["position"]
    if session["finished_at"] is not None:
        return render(request, "session_done.html", study=study)
    if position >= len(order):
        return render(request, "questions.html", study=study, session=session,
                      blocks=studies.questions(order), aspects=PAIRWISE_ASPECTS,
                      questions=QUESTIONS)  # fmt: skip
    turns = await db(request, studies.session_turns, session["id"], order[position])
    sent = sum(1 for t in turns if t["role"] == "user")
    return render(request, "chat.html", study=study, session=session, turns=turns,
                  letter=studies.LETTERS[position], letters=studies.LETTERS[: len(order)],
                  position=position, sent=sent, min_turns=study.config["min_turns"],
                  max_chars=studies.MESSAGE_MAX_CHARS)  # fmt: skip


@page("session.message", RATERS, target="slug")
async def session_message(request: Request) -> Response:
    """One message to the current model, answered through the real engine."""
    study, session = await _session(request)
    if study is None:
        return _missing(request)
    url = f"/studies/{study.slug}/sessions/{session['id']}"
    order = json.loads(session["model_order"])
    text = str(request.state.form.get("text", "")).strip()
    if session["finished_at"] is not None or session["position"] >= len(order):
        return redirect(url)
    if not text:
        flash(request, "Write a message first.")
        return redirect(url)
    if len(text) > studies.MESSAGE_MAX_CHARS:
        flash(request, f"Please keep a message under {studies.MESSAGE_MAX_CHARS} characters.")
        return redirect(url)
    index = order[session["position"]]
    turns = await db(request, studies.session_turns, session["id"], index)
    history = [(t["role"], t["text"]) for t in turns]
    ctx = ctx_of(request)
    try:
        reply, event = await ctx.engines.reply(study, index, session["id"], history, text)
    except Exception:  # a boundary: a model that cannot load must not lose the rater's page
        logger.exception("study %s: model %d could not answer", study.slug, index)
        flash(request, "This chatbot is not available right now (its model could not be "
                       "loaded). Your message was not sent; tell the study's admin.")  # fmt: skip
        return redirect(url)
    await db(request, studies.add_exchange, session["id"], index, text, reply, event,
             ctx.clock())  # fmt: skip
    return redirect(url + "#last")


@page("session.next", RATERS, target="slug")
async def session_next(request: Request) -> Response:
    """Done with this model: on to the next (or to the questions)."""
    study, session = await _session(request)
    if study is None:
        return _missing(request)
    try:
        await db(request, studies.advance, session, study)
    except studies.StudyError as exc:
        flash(request, str(exc).capitalize() + ".")
    return redirect(f"/studies/{study.slug}/sessions/{session['id']}")


@page("session.answers", RATERS, target="slug")
async def session_answers(request: Request) -> Response:
    """The five pairwise answers for every pair of models."""
    study, session = await _session(request)
    if study is None:
        return _missing(request)
    choices = {k: str(v) for k, v in request.state.form.items() if ":" in k}
    try:
        await db(request, studies.save_answers, session, choices, ctx_of(request).clock())
    except studies.StudyError as exc:
        flash(request, str(exc).capitalize() + ".")
    return redirect(f"/studies/{study.slug}/sessions/{session['id']}")


@page("item.rate", RATERS, target="slug")
async def rate_item(request: Request) -> Response:
    """Store the 0–3 scores of one dialogue, then show the next."""
    study = await _study_or_404(request)
    if study is None or study.kind != "rating":
        return _missing(request)
    if study.state != "open":
        flash(request, "This study is closed.")
        return redirect("/studies")
    scores = {a: str(request.state.form.get(a, "")) for a in RATING_ASPECTS}
    try:
        item = int(request.path_params["item"])
        await db(request, studies.save_rating, study, item, request.state.account.id, scores,
                 ctx_of(request).clock())  # fmt: skip
        flash(request, "Saved. Here is the next dialogue.")
    except (ValueError, studies.StudyError) as exc:
        flash(request, str(exc).capitalize() + ".")
    return redirect(f"/studies/{study.slug}")


def routes() -> list[Route]:
    """The raters' routes."""
    base = "/studies/{slug:str}"
    return [
        Route("/studies", studies_page),
        Route(base, study_page),
        Route(base + "/start", study_start, methods=["POST"]),
        Route(base + "/sessions/{sid:str}", session_page),
        Route(base + "/sessions/{sid:str}/message", session_message, methods=["POST"]),
        Route(base + "/sessions/{sid:str}/next", session_next, methods=["POST"]),
        Route(base + "/sessions/{sid:str}/answers", session_answers, methods=["POST"]),
        Route(base + "/items/{item:str}/rate", rate_item, methods=["POST"]),
    ]
