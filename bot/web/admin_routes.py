"""Admins' pages: create studies, open/close them, read results, the audit log, accounts."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.web import studies
from bot.web.auth import list_accounts
from bot.web.http import ctx_of, db, flash, page, redirect, render
from bot.web.results import study_results
from bot.web.store import audit_rows

ADMINS = ("admin",)
MAX_MODELS = 3
AUDIT_PAGE = 200


@page("study.new", ADMINS)
async def new_study(request: Request) -> Response:
    """The form for a new study (interactive or rating)."""
    kind = request.query_params.get("kind", "interactive")
    return render(request, "study_new.html", kind=kind if kind in studies.KINDS else "interactive",
                  backends=studies.MODEL_BACKENDS, slots=range(MAX_MODELS), values={})  # fmt: skip


def _models(form: Any) -> list[dict[str, Any]]:
    models = []
    for i in range(MAX_MODELS):
        if str(form.get(f"name_{i}", "")).strip():
            models.append({
                "name": form.get(f"name_{i}"), "backend": form.get(f"backend_{i}"),
                "path": form.get(f"path_{i}"), "lora_path": form.get(f"lora_{i}"),
                "base_url": form.get(f"base_url_{i}"), "model": form.get(f"model_{i}"),
                "default_adapter": form.get(f"default_adapter_{i}") == "on",
            })  # fmt: skip
    return models


def _sources(text: str) -> list[tuple[str, int]]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise studies.StudyError(f"{line.strip()!r}: write a source and a count, e.g. "
                                     "'esconv:test 20'")  # fmt: skip
        out.append((parts[0], int(parts[1]) if len(parts) == 2 else 20))
    if not out:
        raise studies.StudyError("list at least one source of dialogues")
    return out


def _int(form: Any, key: str, default: int) -> int:
    value = str(form.get(key, "")).strip()
    if not value:
        return default
    if not value.isdigit():
        raise studies.StudyError(f"{key.replace('_', ' ')} must be a whole number")
    return int(value)


async def _create(request: Request, form: Any) -> str:
    ctx = ctx_of(request)
    kind = str(form.get("kind", ""))
    slug, title = str(form.get("slug", "")), str(form.get("title", ""))
    by, now = request.state.account.id, ctx.clock()
    if kind == "interactive":
        issues = str(form.get("issues", "")).splitlines()
        min_turns = _int(form, "min_turns", studies.PAPER_MIN_TURNS)
        await db(request, studies.create_interactive, slug, title, _models(form), issues,
                 min_turns, by, now)  # fmt: skip
    elif kind == "rating":
        items: list[Any] = []
        for spec, count in _sources(str(form.get("sources", ""))):
            items += await db(request, lambda _c, s=spec, n=count: studies.sample_dialogues(s, n))
        await db(request, studies.create_rating, slug, title, items,
                 _int(form, "raters_per_item", 3), by, now)  # fmt: skip
    else:
        raise studies.StudyError("choose the kind of study")
    return slug.strip().lower()


@page("study.create", ADMINS)
async def create_study(request: Request) -> Response:
    """Create the study; on a mistake show the form again with what was typed."""
    form = request.state.form
    try:
        slug = await _create(request, form)
    except studies.StudyError as exc:
        kind = str(form.get("kind", "interactive"))
        return render(request, "study_new.html", status=400, error=str(exc),
                      kind=kind if kind in studies.KINDS else "interactive",
                      backends=studies.MODEL_BACKENDS, slots=range(MAX_MODELS),
                      values={k: str(v) for k, v in form.items()})  # fmt: skip
    flash(request, f"Study {slug} created and open to raters.")
    return redirect(f"/studies/{slug}/results")


@page("study.results", ADMINS, target="slug")
async def results_page(request: Request) -> Response:
    """Table 9 (interactive) or Table 4 (ratings), beside the paper's figures."""
    study = await db(request, studies.get_study, request.path_params["slug"])
    if study is None:
        return render(request, "error.html", status=404, title="No such study",
                      message="This study does not exist.")  # fmt: skip
    results = await db(request, study_results, study)
    name = "results_interactive.html" if study.kind == "interactive" else "results_rating.html"
    return render(request, name, r=results, study=study)


@page("study.state", ADMINS, target="slug")
async def study_state(request: Request) -> Response:
    """Open or close a study."""
    slug = request.path_params["slug"]
    try:
        await db(request, studies.set_state, slug, str(request.state.form.get("state", "")))
    except studies.StudyError as exc:
        flash(request, str(exc))
    return redirect(f"/studies/{slug}/results")


@page("audit.view", ADMINS)
async def audit_page(request: Request) -> Response:
    """Who viewed or did what, newest first (optionally for one conversation or study)."""
    target = request.query_params.get("target") or None
    before = request.query_params.get("before", "")
    rows = await db(request, audit_rows, target=target, limit=AUDIT_PAGE,
                    before=int(before) if before.isdigit() else None)  # fmt: skip
    return render(request, "audit.html", rows=rows, target=target or "", page_size=AUDIT_PAGE)


@page("accounts.view", ADMINS)
async def accounts_page(request: Request) -> Response:
    """The console's accounts (created with `solace web user add`)."""
    return render(request, "accounts.html", rows=await db(request, list_accounts))


def routes() -> list[Route]:
    """The admin routes."""
    return [
        Route("/admin/studies/new", new_study),
        Route("/admin/studies", create_study, methods=["POST"]),
        Route("/studies/{slug:str}/results", results_page),
        Route("/studies/{slug:str}/state", study_state, methods=["POST"]),
        Route("/admin/audit", audit_page),
        Route("/admin/accounts", accounts_page),
    ]
