"""`solace eval generate` / `metrics` through transformers for training runs llama.cpp cannot run
(adaption prompts), on tiny random Llamas trained in the test; and the hybrid boundary moved in
blocks, as the bot moves it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bot.backends import EchoBackend, GenOptions
from evaluation.config import load_config
from evaluation.generate import run_generation
from evaluation.runs import read_rows
from tests.paths import ROOT
from tests.trainer.helpers import (
    ASSISTANT_LINES,
    USER_LINES,
    make_dialogues,
    make_tiny_model_dir,
    write_esconv_file,
)

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished 2-step run of each method on the tiny model."""
    from trainer.config import TrainConfig
    from trainer.train import train

    root = tmp_path_factory.mktemp("hf")
    tiny = make_tiny_model_dir(root / "model")
    data = write_esconv_file(root / "d.json", make_dialogues(8, exchanges=4))
    out = {}
    for method in ("lora", "adaption_prompt", "full"):
        cfg = TrainConfig(name=method, base_model=str(tiny), output_dir=str(root / method),
                          dataset=str(data), eval_fraction=0.25, max_seq_len=128,
                          history_tokens=16, use_system_prompt=False, lora_r=4, method=method,
                          batch_size=2, max_steps=2, learning_rate=5e-2, device="cpu",
                          precision="fp32", num_threads=1)  # fmt: skip
        out[method] = train(cfg, echo=lambda _m: None)
    return out


@pytest.fixture(scope="module")
def test_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "test.json"
    return write_esconv_file(path, make_dialogues(2, exchanges=3, seed=9))


@pytest.mark.parametrize("method", ["lora", "adaption_prompt", "full"])
def test_transformers_backend_generates_every_method(
    runs: dict[str, Path], test_data: Path, tmp_path: Path, method: str
) -> None:
    cfg = load_config(None, [f"generate.data={test_data}", "generate.dialogues=2",
                             f"generate.model={runs[method]}", "generate.max_new_tokens=6",
                             "generate.context_tokens=256"])  # fmt: skip
    counts = run_generation(cfg, tmp_path / "a", progress=False)
    assert counts["done"] == counts["targets"] == 6 and counts["failed"] == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["model"]["backend"] == "transformers"
    assert manifest["model"]["path"] == str(runs[method])
    rows = read_rows(tmp_path / "a").rows
    assert all(0 < r["completion_tokens"] <= 6 for r in rows)
    # the same per-turn seeds give the same replies (resuming or rerunning changes nothing)
    run_generation(cfg, tmp_path / "b", progress=False)
    again = {r["key"]: r["generated"] for r in read_rows(tmp_path / "b").rows}
    assert {r["key"]: r["generated"] for r in rows} == again


def test_transformers_scorer_matches_the_model_and_names_itself(
    runs: dict[str, Path], test_data: Path, tmp_path: Path
) -> None:
    import torch

    from evaluation.hf_backend import TransformersScorer
    from evaluation.ppl import corpus_perplexity

    scorer = TransformersScorer(runs["adaption_prompt"], n_ctx=256)
    prompt = scorer.prompt_tokens([{"role": "user", "content": "i feel sad"}])
    reply = scorer.text_tokens("that sounds really tough .")
    nll = scorer.continuation_nll(prompt, reply)
    with torch.no_grad():
        logits = scorer.backend.model(input_ids=torch.tensor([prompt + reply])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    expected = [-float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(reply)]
    assert nll == pytest.approx(expected, rel=1e-5)
    cfg = load_config(None, [f"generate.data={test_data}", "generate.dialogues=2",
                             f"generate.model={runs['adaption_prompt']}",
                             "generate.max_new_tokens=4", "generate.context_tokens=256"])  # fmt: skip
    run_generation(cfg, tmp_path / "r", progress=False)
    result = corpus_perplexity(read_rows(tmp_path / "r").rows, scorer)
    assert "transformers logits" in result["implementation"] and math.isfinite(result["value"])


def test_strategy_rows_score_the_reply_after_the_reference_prefix(runs: dict[str, Path]) -> None:
    from evaluation.hf_backend import TransformersScorer
    from evaluation.ppl import corpus_perplexity

    scorer = TransformersScorer(runs["lora"], n_ctx=256)
    base = {"key": "d#1", "dialogue_id": "d", "turn_index": 1,
            "messages": [{"role": "user", "content": "i feel sad"}],
            "reference": "that sounds really tough ."}  # fmt: skip
    plain = corpus_perplexity([base], scorer)
    prefixed = corpus_perplexity(
        [{**base, "reference_with_strategy": "[question] that sounds really tough ."}], scorer
    )
    assert plain["reference_tokens"] == prefixed["reference_tokens"] == 5  # the same reply tokens
    assert (
        prefixed["rows_given_reference_strategy"] == 1
        and "[Strategy]" in prefixed["implementation"]
    )
    assert prefixed["value"] != plain["value"]  # conditioned on the prefix


def test_transformers_backend_needs_a_training_run(tmp_path: Path) -> None:
    from evaluation.hf_backend import read_trained_run

    with pytest.raises(ValueError, match="not a finished training run"):
        read_trained_run(tmp_path)
    with pytest.raises(ValueError, match="training run directory"):
        load_config(None, ["generate.backend=transformers", "generate.model=x.gguf",
                           "generate.lora=a.gguf"])  # fmt: skip


def test_hybrid_boundary_moves_in_blocks_when_asked(tmp_path: Path) -> None:
    from dialogue.types import Dialogue, Turn

    turns = []
    for i in range(8):
        turns += [
            Turn("user", USER_LINES[i % 6]),
            Turn("assistant", ASSISTANT_LINES[i % 5], "Question"),
        ]
    data = write_esconv_file(tmp_path / "long.json", [Dialogue("l", "t", "s", None, tuple(turns))])
    raw_counts = {}
    for blocks in (False, True):
        cfg = load_config(None, [f"generate.data={data}", "generate.representation=hybrid",
                                 "generate.raw_recent=2",
                                 f"generate.compress_in_blocks={str(blocks).lower()}"])  # fmt: skip
        run_generation(cfg, tmp_path / str(blocks), backend=EchoBackend(), progress=False)
        rows = sorted(read_rows(tmp_path / str(blocks)).rows, key=lambda r: r["turn_index"])
        raw = set(ASSISTANT_LINES) | set(USER_LINES)
        raw_counts[blocks] = [sum(m["content"] in raw for m in r["messages"][1:-1]) for r in rows]
    # exactly raw_recent raw history turns, against 2..5 when the boundary moves 4 at a time
    assert raw_counts[False] == [0, 2, 2, 2, 2, 2, 2, 2]
    assert raw_counts[True] == [0, 2, 4, 2, 4, 2, 4, 2]
    assert GenOptions().temperature == 0.7


@pytest.mark.slow
@pytest.mark.data
def test_real_adaption_prompt_trains_and_generates(
    smollm2_gguf: Path, data_dir: Path, tmp_path: Path
) -> None:
    """The comparison's adaption-prompt row on the real SmolLM2: 2 steps on the ESConv fixture,
    then a reply and a perplexity through the transformers backend."""
    from bot.backends import GenOptions
    from evaluation.hf_backend import TransformersBackend, TransformersScorer
    from trainer.config import load_config
    from trainer.train import train

    root = ROOT
    cfg = load_config(root / "configs" / "train" / "compare" / "adapter-hybrid.toml", [
        f"output_dir='{tmp_path / 'run'}'", f"base_cache_dir='{root / 'runs' / 'base-cache'}'",
        f"dataset='{data_dir / 'fixtures' / 'esconv_sample.json'}'", "eval_dataset=''",
        "eval_fraction=0.25", "max_train_dialogues=3", "eval_max_samples=2", "max_seq_len=512",
        "batch_size=1", "grad_accum=1", "max_steps=2", "eval_every=2", "num_threads=2",
    ])  # fmt: skip
    run_dir = train(cfg, echo=lambda _m: None)
    assert json.loads((run_dir / "manifest.json").read_text())["method"] == "adaption_prompt"
    backend = TransformersBackend(run_dir, n_ctx=1024, threads=2)
    messages = [{"role": "user", "content": "I moved to a new city and I feel so alone."}]
    reply = "".join(backend.generate(messages, GenOptions(max_new_tokens=24, seed=1)))
    assert reply.strip() and backend.count_tokens(reply) <= 24
    scorer = TransformersScorer(run_dir, n_ctx=1024, threads=2)
    nll = scorer.continuation_nll(scorer.prompt_tokens(messages), scorer.text_tokens("I'm sorry."))
    assert 0 < sum(nll) / len(nll) < 10  # a real model, not a random one
