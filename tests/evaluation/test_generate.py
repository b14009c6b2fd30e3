"""`solace eval generate`: targets, the bot's context code, resume, dialogue mode, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.backends import EchoBackend, GenOptions
from bot.cli import cli
from dialogue.types import Dialogue, Turn
from evaluation.config import load_config
from evaluation.generate import run_generation, select_dialogues, targets, turn_seed
from evaluation.runs import read_rows

# Written for these tests (ESConv's HF JSON Lines schema), not ESConv data.
RECORDS = [
    {"emotion_type": "sadness", "problem_type": "job crisis", "situation": "lost job",
     "experience_type": "Current Experience", "survey_score": {}, "dialog": [
        {"speaker": "sys", "text": "Hello, how can I help you today?", "strategy": "Question"},
        {"speaker": "usr", "text": "I lost my job last week."},
        {"speaker": "usr", "text": "I don't know what to do."},
        {"speaker": "sys", "text": "I'm so sorry, that is a hard blow.", "strategy": "Affirmation and Reassurance"},
        {"speaker": "sys", "text": "How are you coping?", "strategy": "Question"},
        {"speaker": "usr", "text": "Not well, I can't sleep."},
        {"speaker": "sys", "text": "Maybe a short walk before bed could help.", "strategy": "Providing Suggestions"},
    ]},
    {"emotion_type": "anxiety", "problem_type": "academic pressure", "situation": "exams",
     "experience_type": "Current Experience", "survey_score": {}, "dialog": [
        {"speaker": "usr", "text": "My exams start tomorrow and I panic."},
        {"speaker": "sys", "text": "That sounds stressful. What worries you most?", "strategy": "Question"},
        {"speaker": "usr", "text": "Failing and disappointing my parents."},
        {"speaker": "sys", "text": "Many students feel that way before exams.", "strategy": "Self-disclosure"},
    ]},
]  # fmt: skip


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "mini_esconv.json"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS))
    return path


def _config(data: Path, *extra: str):  # noqa: ANN202
    return load_config(None, [f"generate.data={data}", "generate.dialogues=2", *extra])


def test_targets_merge_supporter_runs_and_skip_openers() -> None:
    d = Dialogue("x", "t", None, None, (
        Turn("assistant", "hello"), Turn("user", "a"), Turn("user", "b"),
        Turn("assistant", "c", "Question"), Turn("assistant", "d"), Turn("user", "e"),
        Turn("assistant", "f"),
    ))  # fmt: skip
    got = targets(d)
    assert [(t.turn_index, t.seeker_turns, t.reference) for t in got] == [
        (3, ("a", "b"), "c d"),
        (6, ("e",), "f"),
    ]
    assert got[0].reference_strategy == "Question" and got[0].key == "x#3"


def test_subset_is_fixed_and_seeds_are_stable() -> None:
    ds = [Dialogue(f"d{i}", "t", None, None, ()) for i in range(10)]
    first = [d.id for d in select_dialogues(ds, 4, 13)]
    assert first == [d.id for d in select_dialogues(list(reversed(ds)), 4, 13)]
    assert turn_seed(42, "d1#3") == turn_seed(42, "d1#3") != turn_seed(42, "d1#5")


def test_generate_rows_use_the_bots_context(data_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    counts = run_generation(_config(data_file), run, backend=EchoBackend(), progress=False)
    assert counts == {"targets": 4, "skipped": 0, "done": 4, "failed": 0}
    rows = {r["key"]: r for r in read_rows(run).rows}
    row = next(r for r in rows.values() if r["turn_index"] == 3)
    assert (
        row["messages"][0]["role"] == "system"
        and row["messages"][-1]["content"] == "I don't know what to do."
    )
    assert row["generated"] == "You said: I don't know what to do."
    assert row["reference"] == "I'm so sorry, that is a hard blow. How are you coping?"
    assert row["seeker_turns"] == ["I lost my job last week.", "I don't know what to do."]
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] == 8
    manifest = json.loads((run / "manifest.json").read_text())
    assert (
        manifest["config"]["generate"]["temperature"] == 0.7
        and len(manifest["data"]["dialogues"]) == 2
    )


class CrashingBackend(EchoBackend):
    """Dies (like a killed process) after `n` replies."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n
        self.calls = 0

    def generate(self, messages: Sequence[dict[str, str]], options: GenOptions) -> Iterator[str]:
        self.calls += 1
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        yield from super().generate(messages, options)


def test_resume_skips_done_keys(data_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_generation(_config(data_file), run, backend=CrashingBackend(2), progress=False)
    assert len(read_rows(run).rows) == 2
    again = CrashingBackend(100)
    counts = run_generation(_config(data_file), run, backend=again, progress=False)
    assert counts["skipped"] == 2 and counts["done"] == 2 and again.calls == 2
    lines = (run / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 4 and len({json.loads(x)["key"] for x in lines}) == 4
    with pytest.raises(ValueError, match="different configuration"):
        run_generation(
            _config(data_file, "generate.top_k=5"), run, backend=EchoBackend(), progress=False
        )
    # the thread count is a speed setting: a resume may change it
    more = _config(data_file, "generate.threads=3")
    assert run_generation(more, run, backend=EchoBackend(), progress=False)["skipped"] == 4


def test_dialogue_mode_puts_model_replies_in_history(data_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_generation(
        _config(data_file, "generate.mode=dialogue"), run, backend=EchoBackend(), progress=False
    )
    last = next(r for r in read_rows(run).rows if r["turn_index"] == 6)
    contents = [m["content"] for m in last["messages"]]
    assert "You said: I don't know what to do." in contents  # its own earlier reply
    assert "I'm so sorry, that is a hard blow." not in contents


def test_keypos_representation_compresses_older_turns(data_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_generation(
        _config(data_file, "generate.context_representation=keypos"),
        run,
        backend=EchoBackend(),
        progress=False,
    )
    last = next(r for r in read_rows(run).rows if r["turn_index"] == 6)
    history = [m["content"] for m in last["messages"][1:-1]]
    from dialogue.context import represent

    compressed = represent(["I lost my job last week."], "keypos")[0]
    assert compressed != "I lost my job last week." and compressed in history
    assert last["messages"][-1]["content"] == "Not well, I can't sleep."  # current stays raw


def test_strategy_mode_prefixes_history_and_strips_reply(data_file: Path, tmp_path: Path) -> None:
    class Prefixing(EchoBackend):
        def generate(self, messages, options):  # noqa: ANN001, ANN202
            yield "[Question] How do you feel?"

    run = tmp_path / "run"
    run_generation(
        _config(data_file, "generate.strategies=true"), run, backend=Prefixing(), progress=False
    )
    last = next(r for r in read_rows(run).rows if r["turn_index"] == 6)
    assert any(m["content"].startswith("[Affirmation and Reassurance] ") for m in last["messages"])
    assert last["generated"] == "How do you feel?" and last["generated_strategy"] == "Question"


def test_cli_reports_model_that_fails_to_load(data_file: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", "generate", "--data", str(data_file), "--model",
                                      str(tmp_path / "missing.gguf"), "--out", str(tmp_path / "r")])  # fmt: skip
    assert (
        result.exit_code != 0
        and "missing.gguf" in result.output
        and "does not exist" in result.output
    )
    bad = CliRunner().invoke(
        cli, ["eval", "generate", "--set", "generate.nope=1", "--out", str(tmp_path / "r")]
    )
    assert bad.exit_code != 0 and "generate.nope" in bad.output


def test_cli_metrics_on_malformed_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "generations.jsonl").write_text('{"key": "a"}\nnot json\n')
    result = CliRunner().invoke(cli, ["eval", "metrics", str(run), "--no-ppl"])
    assert result.exit_code != 0
    assert "missing field 'dialogue_id'" in result.output and "not JSON" in result.output
    missing = CliRunner().invoke(cli, ["eval", "metrics", str(tmp_path)])
    assert missing.exit_code != 0 and "generations.jsonl not found" in missing.output


@pytest.mark.slow
def test_real_model_generation_and_perplexity(
    data_file: Path, tmp_path: Path, smollm2_gguf: Path
) -> None:
    from evaluation.ppl import ScoringModel, corpus_perplexity

    run = tmp_path / "run"
    cfg = _config(
        data_file,
        "generate.dialogues=1",
        "generate.max_new_tokens=12",
        "generate.context_tokens=512",
    )
    counts = run_generation(cfg, run, progress=False)
    rows = read_rows(run).rows
    assert counts["failed"] == 0 and rows and all(r["generated"] for r in rows)
    assert all(0 < r["completion_tokens"] <= 13 for r in rows)
    model = ScoringModel(smollm2_gguf, n_ctx=512)
    ppl = corpus_perplexity(rows, model)
    assert 1.0 < ppl["value"] < 1e4 and ppl["reference_tokens"] > 10
    # our NLL equals llama-cpp-python's own prompt logprobs (echo=True) for the same tokens
    text = "I'm so sorry, that is a hard blow."
    prompt = model.formatter(messages=[{"role": "user", "content": "I lost my job."}]).prompt
    prefix, cont = (
        model.prompt_tokens([{"role": "user", "content": "I lost my job."}]),
        model.text_tokens(text),
    )
    assert model.llm.tokenize((prompt + text).encode(), special=True) == prefix + cont
    ours = model.continuation_nll(prefix, cont)
    out = model.llm.create_completion(
        prompt + text, max_tokens=1, echo=True, logprobs=1, temperature=0
    )
    # aligned from the end: its token list leaves out special tokens; the last one is generated
    ref = out["choices"][0]["logprobs"]["token_logprobs"][-len(cont) - 1 : -1]
    assert ours == pytest.approx([-x for x in ref], abs=1e-3)
    # a reference or context that spells a control token is scored as words, as the bot sends it
    tricky = [{"role": "user", "content": "I typed <|im_end|> by accident"}]
    im_end = model.llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
    assert len(im_end) == 1
    plain = [{"role": "user", "content": "I typed something by accident"}]
    own = model.prompt_tokens(plain).count(im_end[0])  # the template's own
    assert own >= 1 and model.prompt_tokens(tricky).count(im_end[0]) == own
    # a scrambled reference is less likely than the real one
    scrambled = [dict(r, reference=" ".join(reversed(r["reference"].split()))) for r in rows]
    assert corpus_perplexity(scrambled, model)["value"] > ppl["value"]


def test_subset_can_grow_on_resume(data_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = run_generation(
        _config(data_file, "generate.dialogues=1"), run, backend=EchoBackend(), progress=False
    )
    grown = run_generation(_config(data_file), run, backend=EchoBackend(), progress=False)
    assert grown["skipped"] == first["done"] and grown["done"] == 4 - first["done"]


def test_max_dialogues_cuts_to_the_same_subset_prefix(data_file: Path, tmp_path: Path) -> None:
    from evaluation.runs import complete_prefix

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # stops inside the second dialogue
        run_generation(_config(data_file), run, backend=CrashingBackend(3), progress=False)
    assert complete_prefix(run) == 1
    first = json.loads((run / "manifest.json").read_text())["data"]["dialogues"][0]
    rows = read_rows(run, max_dialogues=1).rows
    assert rows and {r["dialogue_id"] for r in rows} == {first}
    result = CliRunner().invoke(cli, ["eval", "metrics", str(run), "--no-ppl", "--max-dialogues", "1",
                                      "--set", 'metrics.skip=["bertscore","meteor","extrema"]'])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert (
        metrics["dialogues"] == 1 and metrics["rows"] == len(rows) and metrics["max_dialogues"] == 1
    )


async def test_openai_endpoint_path_and_timeouts(data_file: Path, tmp_path: Path) -> None:
    import asyncio

    from evaluation.localserver import build_app, completion_response, start

    slow = {"on": False}

    async def handler(body: dict) -> dict:
        if slow["on"]:
            await asyncio.sleep(2)
        return completion_response("m", "Tell me more about " + body["messages"][-1]["content"])

    runner, port = await start(build_app(handler))
    url = f"http://127.0.0.1:{port}/v1"
    flags = [f"generate.openai_base_url={url}", "generate.model=m", "generate.max_retries=0"]
    try:
        run = tmp_path / "run"
        counts = await asyncio.to_thread(
            run_generation, _config(data_file, *flags), run, progress=False
        )
        assert counts["done"] == 4
        rows = read_rows(run).rows
        assert all(r["generated"].startswith("Tell me more about ") for r in rows)
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["model"]["backend"] == "openai" and manifest["model"]["base_url"] == url
        slow["on"] = True  # an endpoint that times out: errors are recorded, the run goes on
        cfg = _config(data_file, *flags, "generate.timeout_seconds=0.3")
        failed = await asyncio.to_thread(run_generation, cfg, tmp_path / "slow", progress=False)
        assert failed["failed"] == 4 and failed["done"] == 0
        lines = [
            json.loads(x)
            for x in (tmp_path / "slow" / "generations.jsonl").read_text().splitlines()
        ]
        assert all(x["error"] and x["generated"] is None for x in lines)
        slow["on"] = False  # rerun retries exactly the failed turns
        again = await asyncio.to_thread(run_generation, cfg, tmp_path / "slow", progress=False)
        assert again["done"] == 4 and again["skipped"] == 0
    finally:
        await runner.cleanup()
