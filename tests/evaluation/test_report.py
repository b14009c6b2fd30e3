"""Reports: tables in the papers' layout, embedded charts, and the eval configs validate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from evaluation.config import EvalConfig, apply_overrides, load_config
from evaluation.report import COLUMNS, markdown_table, write_report
from tests.paths import ROOT

CONFIG_DIR = ROOT / "configs" / "eval"
EVAL_CONFIGS = sorted(CONFIG_DIR.glob("*.toml"))


def test_the_shipped_eval_configs_are_found() -> None:
    """Guards the parametrized test below: an empty glob would make it pass by running nothing."""
    assert {p.name for p in EVAL_CONFIGS} >= {"default.toml", "esconv50.toml", "judge-local.toml"}


@pytest.mark.parametrize("path", EVAL_CONFIGS, ids=lambda p: p.name)
def test_every_eval_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, EvalConfig)
    assert cfg != EvalConfig() or path.name == "default.toml"  # a file that changes something


def test_overrides_and_errors(tmp_path: Path) -> None:
    cfg = load_config(None, ["generate.dialogues=3", "judge.base_url=http://127.0.0.1:1/v1",
                             'metrics.skip=["bertscore"]', "generate.strategies=true"])  # fmt: skip
    assert cfg.generate.dialogues == 3 and cfg.metrics.skip == ("bertscore",)
    assert cfg.generate.strategies is True and cfg.judge.base_url.endswith("/v1")
    with pytest.raises(ValueError, match="generate.temperature"):
        load_config(None, ["generate.temperature=9"])
    with pytest.raises(ValueError, match="generate.lora"):
        load_config(
            None, ["generate.openai_base_url=http://x", "generate.model=m", "generate.lora=a"]
        )
    with pytest.raises(ValueError, match="section.key=value"):
        apply_overrides({}, ["novalue"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[generate\n")
    with pytest.raises(ValueError, match="bad.toml"):
        load_config(bad)


def _run(path: Path, label: str, bleu: float, generated: str) -> Path:
    path.mkdir()
    rows = [{"key": f"d{i}#1", "dialogue_id": f"d{i}", "turn_index": 1, "messages": [],
             "reference": "I hear you, that must be hard.", "generated": generated * (i + 1)}
            for i in range(4)]  # fmt: skip
    (path / "generations.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    manifest = {"model": {"path": f"/m/{label}.gguf", "lora": None},
                "config": {"generate": {"representation": label, "mode": "turn"}}}  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(manifest))
    metrics = {"metrics": {
        "bleu_2": {"value": bleu, "label": "BLEU-2", "implementation": "nltk corpus_bleu"},
        "ppl": {"value": 12.5, "label": "PPL", "implementation": "per token", "model": "/m/x.gguf"},
        "meteor": {"value": None, "label": "METEOR", "error": "WordNet missing"},
    }}  # fmt: skip
    (path / "metrics.json").write_text(json.dumps(metrics))
    tox = {"sets": {"generated": {"scorer": "lexicon X", "utterances": 4, "attributes": {
        "toxicity": {"mean": 0.01}, "insult": {"mean": 0.0}}}}}  # fmt: skip
    (path / "toxicity.json").write_text(json.dumps(tox))
    return path


def test_report_is_self_contained_html_and_markdown(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", "raw", 3.25, "okay. ")
    b = _run(tmp_path / "b", "keypos", 4.5, "that sounds hard. ")
    out = write_report([a, b], tmp_path / "report", notes=["different models from the papers"])
    html = out["html"].read_text()
    assert html.count("data:image/png;base64,") >= 3  # B-2, PPL, lengths
    assert 'src="http' not in html and "<script" not in html
    assert "3.25" in html and "keypos" in html and "different models" in html
    assert "WordNet missing" in html  # the refusal is visible, not a silent blank
    md = out["markdown"].read_text()
    assert "| raw / raw | 4 | 4 | 12.50 | 3.25 | — |" in md  # PPL, B-2, refused METEOR
    assert "lexicon X" in md
    header = out["csv"].read_text().splitlines()[0].split(",")
    assert header[3:] == [h for _, h in COLUMNS]


def test_markdown_table_shape() -> None:
    assert markdown_table(["a", "b"], [["1", "2"]]).splitlines() == [
        "| a | b |",
        "|---|---|",
        "| 1 | 2 |",
    ]


def test_cli_report_and_toxicity(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", "raw", 3.0, "you idiot. ")
    result = CliRunner().invoke(cli, ["eval", "toxicity", str(a), "--scorer", "lexicon"])
    assert result.exit_code == 0, result.output
    tox = json.loads((a / "toxicity.json").read_text())
    assert tox["sets"]["generated"]["attributes"]["insult"]["mean"] > 0.3
    assert "offline lexicon" in result.output
    rep = CliRunner().invoke(cli, ["eval", "report", str(a), "--out", str(tmp_path / "r")])
    assert rep.exit_code == 0 and (tmp_path / "r" / "report.html").is_file()
    both = CliRunner().invoke(cli, ["eval", "toxicity", str(a), "--data", "esconv:test"])
    assert both.exit_code != 0 and "exactly one" in both.output


def test_toxicity_from_bot_database(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "bot.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE turns (id INTEGER PRIMARY KEY, role TEXT, text TEXT)")
    con.executemany("INSERT INTO turns (role, text) VALUES (?, ?)",
                    [("user", "I feel awful"), ("assistant", "I'm here with you."),
                     ("assistant", "That sounds so hard.")])  # fmt: skip
    con.commit()
    con.close()
    out = tmp_path / "tox.json"
    result = CliRunner().invoke(cli, ["eval", "toxicity", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    sets = json.loads(out.read_text())["sets"]
    assert sets["bot_db:assistant"]["utterances"] == 2 and sets["bot_db:user"]["utterances"] == 1
