"""The toxicity job (bot.audit.toxicity) on a real temporary SQLite file."""

from __future__ import annotations

import re
from pathlib import Path

from bot.audit.jobs import JobContext, run_job
from tests.bot.audit.audit_data import (
    DAY,
    NOW,
    count,
    make_settings,
    populate,
    rows,
)

# --- toxicity --------------------------------------------------------------------------------


async def test_toxicity_scores_every_turn_once_and_raises_events_over_threshold(db: Path) -> None:
    pop = populate(db, 80, start=NOW - 2 * DAY, end=NOW - DAY, toxic_bot_share=0.2)
    settings = make_settings(db, toxicity_threshold=0.5)
    outcome = await run_job(JobContext(settings, db, clock=lambda: NOW), "toxicity")
    assert outcome.ok and outcome.result is not None
    assert outcome.result.items == pop.turns == count(db, "SELECT COUNT(*) FROM audit_toxicity")
    assert "lexicon" in outcome.result.detail["scorer"]
    over = count(db, "SELECT COUNT(*) FROM audit_toxicity WHERE max_score > 0.5")
    assert over > 0
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'toxicity'") == over
    # The bot's toxic line is caught and attributed to the assistant.
    assert count(
        db,
        "SELECT COUNT(*) FROM audit_toxicity a JOIN turns t ON t.id = a.turn_id "
        "WHERE a.role = 'assistant' AND t.text LIKE 'Honestly that is a stupid%' "
        "AND a.max_score > 0.5",
    ) == count(db, "SELECT COUNT(*) FROM turns WHERE text LIKE 'Honestly that is a stupid%'")
    details = {r[0] for r in rows(db, "SELECT detail FROM events WHERE kind = 'toxicity'")}
    assert all(re.fullmatch(r"(user|assistant) \d\.\d\d", d) for d in details)  # no text
    again = await run_job(JobContext(settings, db, clock=lambda: NOW + 60), "toxicity")
    assert again.ok and again.result is not None and again.result.items == 0
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'toxicity'") == over
