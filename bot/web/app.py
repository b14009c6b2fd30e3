"""The Starlette application: `build_app(settings, db_path)` and the login pages.

Sessions are signed cookies (itsdangerous, via Starlette's SessionMiddleware: HttpOnly,
SameSite=Strict, Secure when the console is served over TLS) that carry only a random login id
and the CSRF token; the login itself lives in `web_logins`, so logging out, a password change or
a disabled account ends it at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot.audit.report.flagged import iso
from bot.config import Settings
from bot.web import admin_routes, moderation_routes, study_routes
from bot.web.auth import LoginLimits, check_login, end_login, start_login
from bot.web.http import (
    SecurityHeaders,
    WebContext,
    address,
    ctx_of,
    db,
    forbidden,
    form_with_csrf,
    page,
    redirect,
    render,
)
from bot.web.results import counted
from bot.web.store import audit, connection, migrate_web, signing_key

HERE = Path(__file__).parent
COOKIE_NAME = "solace_console"


async def login_form(request: Request) -> Response:
    """The login page (the CSRF token is made here, before anyone is logged in)."""
    return render(request, "login.html", next=_safe_next(request.query_params.get("next")))


def _safe_next(value: str | None) -> str:
    """Only a local path (never another site) is followed after logging in."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


async def login(request: Request) -> Response:
    """Check the password (rate-limited), start a fresh login, rotate the CSRF token."""
    ctx = ctx_of(request)
    form = await form_with_csrf(request)
    if form is None:
        await db(request, audit, ctx.clock(), None, "login", None, 403, address(request))
        return forbidden(request, "The login form expired (missing CSRF token). Reload it.")
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    w = ctx.settings.web
    limits = LoginLimits(w.login_failures_per_account, w.login_failures_per_address)
    account, why = await db(request, check_login, name, password, address(request),
                            ctx.clock(), limits)  # fmt: skip
    nxt = _safe_next(str(form.get("next", "/")))
    if account is None:
        status = 429 if why == "locked" else 401
        await db(request, audit, ctx.clock(), None, f"login.{why}", name[:64], status,
                 address(request))  # fmt: skip
        message = ("Too many failed attempts. Wait 15 minutes, or ask an admin."
                   if why == "locked" else "Wrong name or password.")  # fmt: skip
        return render(request, "login.html", status=status, next=nxt, error=message, name=name)
    sid = await db(request, start_login, account.id, ctx.clock(), w.session_hours)
    request.session.clear()  # a new session after login: no fixation, a fresh CSRF token
    request.session["sid"] = sid
    await db(request, audit, ctx.clock(), account, "login", None, 303, address(request))
    return redirect(nxt)


@page("logout")
async def logout(request: Request) -> Response:
    """End the login server-side and drop the cookie."""
    await db(request, end_login, request.session.get("sid", ""), ctx_of(request).clock())
    request.session.clear()
    return redirect("/login")


@page("home")
async def home(request: Request) -> Response:
    """Moderators start at the queue, raters at their studies."""
    account = request.state.account
    return redirect("/queue" if account.moderates else "/studies")


async def not_found(request: Request, exc: Exception) -> Response:
    """A plain 404 page."""
    return render(request, "error.html", status=404, title="Not found",
                  message="There is nothing here.")  # fmt: skip


def short_source(spec: str) -> str:
    """A rating study's source as a column heading: a data-set spec, or a file or run name."""
    kind, _, rest = spec.partition(":")
    if kind == "run" and rest:
        return f"run {Path(rest).name}"
    path = Path(spec)
    return path.name if path.is_absolute() or "/" in spec else spec


def breakable(text: str) -> Any:
    """Escaped text that may wrap after '_', '.' and '/' (long file names in narrow columns)
    but never inside a word."""
    from markupsafe import Markup, escape

    out = str(escape(text))
    for mark in ("_", ".", "/"):
        out = out.replace(mark, mark + "<wbr>")
    return Markup(out)  # noqa: S704 - built from escaped text


def _templates() -> Any:
    import jinja2
    from starlette.templating import Jinja2Templates

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is escaped: user text never becomes markup
        undefined=jinja2.StrictUndefined,
    )
    env.filters["pct"] = lambda v: f"{v:.0f}"
    env.filters["when"] = lambda t: iso(t) or "—"
    env.filters["short_source"] = short_source
    env.filters["counted"] = counted
    env.filters["breakable"] = breakable
    env.filters["num"] = lambda v, d=2: "—" if v is None else f"{v:.{d}f}"
    return Jinja2Templates(env=env)


def routes() -> list[Any]:
    """Every route of the console."""
    return [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        *moderation_routes.routes(),
        *study_routes.routes(),
        *admin_routes.routes(),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]


def build_app(
    settings: Settings,
    db_path: Path,
    *,
    clock: Callable[[], float] = time.time,
    engines: Any = None,
) -> Starlette:
    """The console over the database file (migrated here); `engines` answers study chats
    (default: `StudyEngines(settings)`, the real engine per study model)."""
    from bot.web.eval_engine import StudyEngines

    db_path = Path(db_path).expanduser()
    migrate_web(db_path)
    with connection(db_path) as conn:
        key = signing_key(conn, clock())
    w = settings.web
    secure = w.secure_cookies
    if secure is None:
        secure = (w.public_url or "").startswith("https://")
    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=key,
                session_cookie=COOKIE_NAME,
                max_age=int(w.session_hours * 3600),
                same_site="strict",
                https_only=secure,
            ),  # fmt: skip
        ],
        exception_handlers={404: not_found},
    )
    app.state.web = WebContext(settings, db_path, _templates(), clock,
                               engines or StudyEngines(settings))  # fmt: skip
    return app
