"""Moderators' pages: the queue, one conversation (events, redacted excerpt, notes, labels),
queue actions, and the export of labelled messages as safety-evaluation cases."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.config import Settings
from bot.web import queue
from bot.web.auth import accounts_by_role
from bot.web.http import ctx_of, db, flash, page, redirect, render

MODERATORS = ("moderator", "admin")
FILTERS = ("open", "new", "claimed", "escalated", "reviewed", "overdue", "mine", "all")
SECONDS_PER_DAY = 86_400


def window(settings: Settings, now: float) -> tuple[float, float]:
    """What the queue covers: everything the audit store may still hold."""
    days = settings.jobs.audit_retention_days or settings.memory.retention_days
    days = min(days, settings.memory.retention_days)
    return now - days * SECONDS_PER_DAY, now + 1


def _select(items: list[queue.QueueItem], what: str, me: str) -> list[queue.QueueItem]:
    if what == "open":
        return [i for i in items if i.state != "reviewed"]
    if what == "overdue":
        return [i for i in items if i.overdue]
    if what == "mine":
        return [i for i in items if i.claimed_by == me and i.state != "reviewed"]
    if what == "all":
        return items
    return [i for i in items if i.state == what]


@page("queue.view", MODERATORS)
async def queue_page(request: Request) -> Response:
    """Flagged conversations, most serious first, with counts by state."""
    ctx = ctx_of(request)
    now = ctx.clock()
    what = request.query_params.get("show", "open")
    what = what if what in FILTERS else "open"
    try:
        page_no = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        page_no = 1
    start, end = window(ctx.settings, now)
    items = await db(request, queue.queue_items, start, end, now, ctx.settings.web.overdue_hours)
    shown = _select(items, what, request.state.account.name)
    size = ctx.settings.web.queue_page_size
    pages = max(1, -(-len(shown) // size))
    page_no = min(page_no, pages)
    listed = await db(request, queue.with_chats, shown[(page_no - 1) * size : page_no * size])
    return render(
        request, "queue.html", items=listed,
        counts=queue.counts(items, request.state.account.name), show=what, filters=FILTERS, page=page_no, pages=pages,
        total=len(shown), overdue_hours=ctx.settings.web.overdue_hours, size=size,
    )  # fmt: skip


def _conversation(conn: Any, cid: str, start: float, end: float, now: float,
                  overdue: float) -> dict[str, Any] | None:  # fmt: skip
    item = queue.one_item(conn, cid, start, end, now, overdue)
    if item is None:
        return None
    return {"item": item, **queue.conversation_detail(conn, cid),
            "moderators": accounts_by_role(conn, "moderator", "admin")}  # fmt: skip


@page("conversation.view", MODERATORS, target="cid")
async def conversation_page(request: Request) -> Response:
    """One flagged conversation: why it was flagged, its events, the redacted excerpt (when
    the audit store holds it), notes, labels and the actions."""
    ctx = ctx_of(request)
    cid = request.path_params["cid"]
    now = ctx.clock()
    start, end = window(ctx.settings, now)
    data = await db(request, _conversation, cid, start, end, now, ctx.settings.web.overdue_hours)
    if data is None:
        return render(request, "error.html", status=404, title="Not in the queue",
                      message="This conversation is not flagged, or it was erased.")  # fmt: skip
    return render(request, "conversation.html", cid=cid, decisions=queue.DECISIONS,
                  categories=queue.CATEGORIES, styles=queue.STYLES, **data)  # fmt: skip


@page("conversation.action", MODERATORS, target="cid")
async def conversation_action(request: Request) -> Response:
    """claim / release / handover / review / reopen / escalate / resolve / note."""
    ctx = ctx_of(request)
    cid = request.path_params["cid"]
    form = request.state.form
    account = request.state.account
    to = str(form.get("to_account", ""))
    try:
        done = await db(request, queue.act, cid, str(form.get("action", "")), account.id,
                        account.is_admin, ctx.clock(), note=str(form.get("note", "")),
                        to_account=int(to) if to.isdigit() else None)  # fmt: skip
        flash(request, done.capitalize() + ".")
    except queue.QueueError as exc:
        flash(request, f"Not done: {exc}.")
    return redirect(f"/conversations/{cid}")


@page("conversation.label", MODERATORS, target="cid")
async def conversation_label(request: Request) -> Response:
    """Label the screen's decision on one of the person's messages."""
    ctx = ctx_of(request)
    cid = request.path_params["cid"]
    form = request.state.form
    turn = str(form.get("turn_id", ""))
    try:
        if not turn.isdigit():
            raise queue.QueueError("choose a message")
        case = await db(
            request, queue.label, cid, int(turn), str(form.get("decision", "")),
            request.state.account.id, ctx.clock(),
            category=str(form.get("category", "")) or None, style=str(form.get("style", "")) or None,
        )  # fmt: skip
        what = f"crisis ({case['category']})" if case["level"] == "crisis" else "not a crisis"
        flash(request, f"Labelled: {what}, style {case['style']}.")
    except queue.QueueError as exc:
        flash(request, f"Not labelled: {exc}.")
    return redirect(f"/conversations/{cid}#turn-{turn}")


@page("labels.export", MODERATORS)
async def export_labels(request: Request) -> Response:
    """Labelled messages with review consent, as JSON Lines for `solace safety evaluate`."""
    cases = await db(request, queue.export_cases)
    return Response(
        queue.cases_jsonl(cases), media_type="application/x-ndjson",
        headers={"content-disposition": 'attachment; filename="moderator-labels.jsonl"'},
    )  # fmt: skip


def routes() -> list[Route]:
    """The moderation routes."""
    return [
        Route("/queue", queue_page),
        Route("/conversations/{cid:str}", conversation_page),
        Route("/conversations/{cid:str}/action", conversation_action, methods=["POST"]),
        Route("/conversations/{cid:str}/label", conversation_label, methods=["POST"]),
        Route("/labels/export.jsonl", export_labels),
    ]
