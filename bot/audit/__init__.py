"""Moderator audits: scheduled jobs over a redacted copy of reviewable conversations.

One module per job's work — `log_conversations` (copy reviewable turns, redacted by `redact`),
`toxicity`, `judge` (the LLM judge from `scoring`), `retention` — plus `jobs` (the thin
coroutines and the APScheduler that runs them), `state` (cursors, leases, run logs), `store` (a
job's own connection), `report/` (the moderator report) and `cli` (`solace audit`).
"""

from bot.audit.jobs import JOBS, JobContext, build_scheduler, run_job
from bot.audit.state import JOB_NAMES, JobResult

__all__ = ["JOBS", "JOB_NAMES", "JobContext", "JobResult", "build_scheduler", "run_job"]
