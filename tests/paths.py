"""Where things are, for tests in any folder: the checkout, the shared test data."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures"
SAFETY_CASES = TESTS / "safety_cases"
