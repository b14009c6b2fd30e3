"""`solace data stats|context` through click's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from dialogue.cli import context_rows, dataset_stats, load_token_counter
from dialogue.datasets import load_path
from tests.paths import FIXTURES

EXTES_IRREGULAR = FIXTURES / "extes_irregular.json"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["data", *args])
    return result.exit_code, result.output


def test_every_data_command_has_help() -> None:
    for args in (["--help"], ["stats", "--help"], ["context", "--help"]):
        code, output = _run(*args)
        assert code == 0, output
        assert "Usage:" in output and len(output.splitlines()) > 3


def test_stats_table_and_load_report() -> None:
    code, output = _run("stats", str(EXTES_IRREGULAR))
    assert code == 0, output
    assert "| 7 | 36 | 5.14 |" in output  # dialogues, utterances, utterances per dialogue
    assert "12 records, 7 loaded, 5 rejected" in output
    assert "turn_both_roles" in output and "record_not_object" in output
    assert "Avoid Judgment and Criticism" in output
    code, output = _run("stats", "--issues", "50", str(EXTES_IRREGULAR))
    assert "record 1: repaired strategy_unknown turn 5: 'Validation'" in output
    assert "record 7: rejected record_not_object str" in output


def test_stats_json_matches_the_loader() -> None:
    code, output = _run("stats", "--json", str(EXTES_IRREGULAR), str(FIXTURES / "esconv_raw.json"))
    assert code == 0, output
    extes, esconv = json.loads(output)
    dialogues = load_path(EXTES_IRREGULAR).dialogues
    texts = [t.text for d in dialogues for t in d.turns]
    assert extes["utterances"] == len(texts) == 36
    assert extes["words_per_utterance"] == pytest.approx(
        sum(len(t.split()) for t in texts) / len(texts)
    )
    assert extes["scenes"]["(none)"] == 2
    assert extes["load_report"]["rejected"] == 5
    assert esconv["dialogues"] == 1 and esconv["strategies"] == {
        "Question": 1,
        "Reflection of feelings": 1,
    }


def test_stats_merge_consecutive() -> None:
    code, output = _run("stats", "--json", "--merge-consecutive", str(EXTES_IRREGULAR))
    assert code == 0
    assert json.loads(output)[0]["utterances"] == 36 - 3


def test_stats_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'[{"content": [')
    code, output = _run("stats", str(bad))
    assert code == 1
    assert "Error:" in output and str(bad) in output and "record 0" in output
    code, output = _run("stats", "esconv:nonsense")
    assert code == 1 and "unknown ESConv split" in output


def test_context_bad_tokenizer(tmp_path: Path) -> None:
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("x")
    code, output = _run("context", str(EXTES_IRREGULAR), "--tokenizer", str(not_a_model))
    assert code == 1 and "not a .gguf file" in output


def test_dataset_stats_of_nothing() -> None:
    assert dataset_stats([])["words_per_utterance"] == 0.0


@pytest.mark.slow
def test_context_with_the_smollm2_gguf(smollm2_gguf: Path) -> None:
    code, output = _run("context", str(EXTES_IRREGULAR), "--tokenizer", str(smollm2_gguf), "--json")
    assert code == 0, output
    rows = {row["representation"]: row for row in json.loads(output)["rows"]}
    assert list(rows) == ["raw", "keypos", "nostopwords", "hybrid"]
    count = load_token_counter(smollm2_gguf)
    texts = [t.text for d in load_path(EXTES_IRREGULAR).dialogues for t in d.turns]
    raw = sum(count(t) for t in texts) / len(texts)
    assert rows["raw"]["tokens_per_utterance"] == pytest.approx(raw)
    assert rows["raw"]["utterances_in_budget"] == pytest.approx(2048 / raw)
    for name in ("keypos", "nostopwords", "hybrid"):
        assert rows[name]["tokens_per_utterance"] < raw
        assert rows[name]["extra_vs_raw"] > 0
    code, table = _run("context", str(EXTES_IRREGULAR), "--tokenizer", str(smollm2_gguf))
    assert "| keypos |" in table and "budget 2048 tokens" in table


@pytest.mark.slow
def test_context_with_a_local_hf_tokenizer(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    words = sorted({w for line in EXTES_IRREGULAR.read_text().split() for w in [line.lower()]})
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    fast.save_pretrained(tmp_path)
    count = load_token_counter(tmp_path)
    assert count("hello there, friend") == 4  # Whitespace pre-tokenizer splits off the comma
    dialogues = load_path(EXTES_IRREGULAR).dialogues
    rows = context_rows(dialogues, count, budget=100, raw_recent=2)
    assert rows[0]["representation"] == "raw"
    assert rows[1]["tokens_per_utterance"] < rows[0]["tokens_per_utterance"]


def test_stats_prints_the_extes_paper_beside_extes_data() -> None:
    code, output = _run("stats", str(EXTES_IRREGULAR))
    assert code == 0, output
    assert "beside the ExTES paper" in output
    assert "| dialogues | 7 | 11,177 |" in output and "| utts/dialogue | 5.14 | 18.2 |" in output
    assert "| Emotional Validation | 2 | 11.1% | 19,367 | 19.8% |" in output
    assert "| Academic Stress | 1 | 14.3% | 403 | 3.6% |" in output
    code, output = _run("stats", "--no-paper", str(EXTES_IRREGULAR))
    assert "beside the ExTES paper" not in output
    code, output = _run("stats", str(FIXTURES / "esconv_raw.json"))
    assert "beside the ExTES paper" not in output
    code, output = _run("stats", "--json", str(EXTES_IRREGULAR))
    paper = json.loads(output)[0]["paper"]
    assert paper["totals"]["utterances"] == {"ours": 36, "paper": 200_393}
    assert len([r for r in paper["scenes"] if r["paper_count"]]) == 36
    assert json.loads(output)[0]["dialogue_length"] == {"min": 2, "median": 5.0, "max": 10}
