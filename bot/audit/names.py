"""The audit jobs' names: one per job, for its schedule, its state row and `solace audit run`.

Nothing to import here, so `solace audit --help` stays instant.
"""

from __future__ import annotations

JOB_NAMES = ("log-conversations", "judge", "toxicity", "retention", "report")
# The rows `solace audit status` and the report show (the report job keeps one per period).
STATE_ROWS = ("log-conversations", "toxicity", "judge", "retention", "report:daily",
              "report:weekly")  # fmt: skip
# schedule entry -> the `jobs.*_cron` setting that times it
SCHEDULES: dict[str, str] = {
    "log-conversations": "log_conversations_cron",
    "toxicity": "toxicity_cron",
    "judge": "judge_cron",
    "retention": "retention_cron",
    "report-daily": "report_daily_cron",
    "report-weekly": "report_weekly_cron",
}
