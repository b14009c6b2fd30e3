"""What every page shares: the signed-cookie login, role checks, CSRF tokens, the audit log,
security headers and template rendering.

`@page(action, roles)` wraps a handler: no live login → a redirect to /login (for every route);
a POST without the form's CSRF token → 403; a role that may not use the route → 403; every
request, allowed or refused, leaves one `web_audit` row (who, what, which target, status).
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.config import Settings
from bot.web.auth import Account, current_account
from bot.web.store import audit, connection

logger = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 64 * 1024
SECURITY_HEADERS = {
    # No script runs on any page: user text that slipped through escaping still could not act.
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
Handler = Callable[..., Awaitable[Response]]


@dataclass
class WebContext:
    """What the handlers need; held in `app.state.web`."""

    settings: Settings
    db_path: Path
    templates: Any
    clock: Callable[[], float] = time.time
    engines: Any = None  # bot.web.eval_engine.StudyEngines


def ctx_of(request: Request) -> WebContext:
    """The app's WebContext."""
    return request.app.state.web  # type: ignore[no-any-return]


async def db(request: Request, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `fn(conn, *args)` on a fresh connection in a worker thread (the loop stays free)."""
    path = ctx_of(request).db_path

    def work() -> Any:
        with connection(path) as conn:
            return fn(conn, *args, **kwargs)

    return await run_in_threadpool(work)


def address(request: Request) -> str:
    """The client's address (uvicorn resolves X-Forwarded-For from trusted proxies)."""
    return request.client.host if request.client else "unknown"


def csrf_token(request: Request) -> str:
    """This browser session's CSRF token (made on first use, kept in the signed cookie)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def form_with_csrf(request: Request) -> Any:
    """The POSTed form, or None when its CSRF token is missing or wrong."""
    length = int(request.headers.get("content-length") or 0)
    if length > MAX_FORM_BYTES:
        return None
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not isinstance(expected, str):
        return None
    return form if hmac.compare_digest(sent, expected) else None


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """Render a template (autoescaped) with the account, CSRF token and flash message."""
    ctx = ctx_of(request)
    values.setdefault("account", getattr(request.state, "account", None))
    values["csrf"] = csrf_token(request)
    values["flash"] = request.session.pop("flash", None)
    values["request"] = request
    return ctx.templates.TemplateResponse(request, template, values, status_code=status)


def flash(request: Request, text: str) -> None:
    """A one-line message shown on the next page."""
    request.session["flash"] = text[:300]


def redirect(url: str) -> RedirectResponse:
    """303 See Other (a POST answered by a GET: reloading never re-submits)."""
    return RedirectResponse(url, status_code=303)


def forbidden(request: Request, why: str) -> HTMLResponse:
    """The 403 page."""
    return render(request, "error.html", status=403, title="Not allowed", message=why)


async def _audit(request: Request, account: Account | None, action: str, target: str | None,
                 status: int) -> None:  # fmt: skip
    now = ctx_of(request).clock()
    await db(request, audit, now, account, action, target, status, address(request))


def page(action: str, roles: tuple[str, ...] | None = None, target: str | None = None) -> Any:
    """Decorate a handler: login required, CSRF on POST, role check, one audit row.

    Args:
        action: what the audit log calls this view or action ("queue.view", "label", …).
        roles: who may use it (None: every logged-in account).
        target: the path parameter the audit row records (a conversation id, a study).
    """

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            ctx = ctx_of(request)
            sid = request.session.get("sid")
            account = None
            if isinstance(sid, str):
                account = await db(request, current_account, sid, ctx.clock())
            the_target = request.path_params.get(target) if target else None
            if account is None:
                await _audit(request, None, action, the_target, 401)
                nxt = request.url.path if request.method == "GET" else "/"
                return redirect(f"/login?next={quote(nxt)}")
            request.state.account = account
            form = None
            if request.method == "POST":
                form = await form_with_csrf(request)
                if form is None:
                    await _audit(request, account, action, the_target, 403)
                    return forbidden(
                        request,
                        "This form has expired or did not come from this "
                        "console (missing CSRF token). Go back, reload, try again.",
                    )
            if roles is not None and account.role not in roles:
                await _audit(request, account, action, the_target, 403)
                return forbidden(request, f"Your role ({account.role}) may not open this page.")
            request.state.form = form
            response = await handler(request)
            await _audit(request, account, action, the_target, response.status_code)
            return response

        return run

    return wrap


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response (pages, errors, static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.decode().lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name not in present:
                        headers.append((name.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
