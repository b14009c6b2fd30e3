"""The `[web]` section: the moderators' and raters' console (`solace web`; docs/web.md)."""

from __future__ import annotations

from pydantic import Field

from bot.config.sections import _Section


class WebSettings(_Section):
    """`solace web`: the moderators' and raters' console (owned by the web area; docs/web.md)."""

    host: str = Field("127.0.0.1", description="Address to listen on (put a TLS proxy in front).")
    port: int = Field(8765, ge=1, le=65535, description="Port to listen on.")
    public_url: str | None = Field(
        None,
        description="The console's address as moderators reach it (e.g. https://mod.example.org); "
        "reports link their flagged conversations here; https:// also marks cookies Secure.",
    )
    secure_cookies: bool | None = Field(
        None, description="Send cookies with Secure; empty = when public_url is https://."
    )
    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="A login lasts this long (then log in again)."
    )
    login_failures_per_account: int = Field(
        5, ge=1, description="Failed logins for one account within 15 minutes before a pause."
    )
    login_failures_per_address: int = Field(
        20, ge=1, description="Failed logins from one client address within 15 minutes."
    )
    overdue_hours: float = Field(
        24.0, gt=0, description="A flagged conversation unreviewed this long is highlighted."
    )
    queue_page_size: int = Field(50, ge=5, le=500, description="Conversations per queue page.")
    proxy_addresses: tuple[str, ...] = Field(
        ("127.0.0.1",),
        description="Reverse proxies whose X-Forwarded-For/-Proto headers are trusted.",
    )
