"""Moderator audits: scheduled jobs over a redacted copy of reviewable conversations.

One module per job's work — `log_conversations` (copy reviewable turns, redacted by `redact`),
`toxicity`, `judge` (the LLM judge from `scoring`), `retention` — plus `jobs` (the thin
coroutines and the APScheduler that runs them), `state` (cursors, leases, run logs), `store` (a
job's own connection), `report/` (the moderator report) and `cli` (`solace audit`).
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from bot.audit.jobs import (
        JOBS as JOBS,
        JobContext as JobContext,
        build_scheduler as build_scheduler,
        run_job as run_job,
    )
    from bot.audit.names import JOB_NAMES as JOB_NAMES
    from bot.audit.state import JobResult as JobResult

__getattr__, __dir__ = lazy_exports(__name__)
