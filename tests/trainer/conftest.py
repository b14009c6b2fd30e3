"""Fixtures of the trainer's tests: a tiny Llama-architecture model and a small ESConv-shaped file
(tests/trainer/helpers.py makes both; module scope, so each test module builds its own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.helpers import make_dialogues, make_tiny_model_dir, write_esconv_file


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "dialogues.json"
    return write_esconv_file(path, make_dialogues(12, exchanges=5))
