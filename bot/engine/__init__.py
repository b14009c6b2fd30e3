"""The platform-neutral conversation engine: one turn, in order, for one person at a time.

`engine` (`Engine.respond` and the user commands), `release` (what of a streamed reply the guard
lets out), `risk` (the per-person conversation-level risk around each screen), `build` (`build_engine`: memory, backend and safety wired from settings). Adapters,
audits and ops sit above it; safety, backends and memory below.
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from bot.engine.build import (
        backend_classifier as backend_classifier,
        build_engine as build_engine,
        build_safety as build_safety,
    )
    from bot.engine.engine import Engine as Engine
    from bot.engine.release import (
        Reply as Reply,
        guarded_release as guarded_release,
        releasable as releasable,
        trim_unfinished as trim_unfinished,
    )
    from bot.engine.risk import RiskTracker as RiskTracker

__getattr__, __dir__ = lazy_exports(__name__)
