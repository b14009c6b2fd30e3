"""`solace web`: a server-rendered console over Solace's own SQLite database.

Moderators work the review queue of flagged conversations; raters run the ExTES paper's human
evaluation; admins create studies and read results. Starlette + Jinja2, no client-side build.

`app` (`build_app`), `http` (sessions, CSRF, page rendering), `auth` (accounts and logins),
`store` (the console's own migration set `Migrations("solace-web")`, connections, audit log),
`queue` with `moderation_routes` (the review queue), `studies`, `eval_engine`, `study_routes`,
`admin_routes`, `stats` and `results` (the human evaluation), `cli` (`solace web`). In the bot's
layers it sits under the entry points and over audit and the engine: it reads flagged
conversations through `bot.audit.report.flagged` and answers study chats with `bot.engine`;
nothing else in `bot` imports it but `bot.migrate`.
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from bot.web.app import build_app as build_app
    from bot.web.stats import (
        bootstrap_ci as bootstrap_ci,
        fleiss_kappa as fleiss_kappa,
        pairwise_table as pairwise_table,
        rating_table as rating_table,
    )
    from bot.web.store import migrate_web as migrate_web

__getattr__, __dir__ = lazy_exports(__name__)
