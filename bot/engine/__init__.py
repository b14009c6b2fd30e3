"""The platform-neutral conversation engine: one turn, in order, for one person at a time.

`engine` (`Engine.respond` and the user commands), `release` (what of a streamed reply the guard
lets out), `build` (`build_engine`: memory, backend and safety wired from settings). Adapters,
audits and ops sit above it; safety, backends and memory below.
"""

from bot.engine.build import backend_classifier, build_engine, build_safety
from bot.engine.engine import Engine
from bot.engine.release import guarded_release, releasable, trim_unfinished

__all__ = [
    "Engine",
    "backend_classifier",
    "build_engine",
    "build_safety",
    "guarded_release",
    "releasable",
    "trim_unfinished",
]
