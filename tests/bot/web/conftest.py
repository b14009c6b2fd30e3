"""Fixtures of the web console's tests: a populated database and the app over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.web.app import build_app
from tests.bot.web.helpers import Console, make_console


@pytest.fixture
def console(tmp_path: Path) -> Console:
    return make_console(tmp_path, 60)


@pytest.fixture
def app(console: Console) -> Any:
    return build_app(console.settings, console.db)
