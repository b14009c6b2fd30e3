"""The LLM judge against local OpenAI-compatible servers on 127.0.0.1.

A scripted aiohttp server plays malformed, prose, slow and well-formed judges; one test runs
the real SmolLM2 model behind `evaluation.localserver` with a JSON-schema grammar.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from evaluation.judge_run import judge_pairwise, judge_run, length_bias
from evaluation.localserver import build_app, completion_response, start
from scoring.config import JudgeConfig
from scoring.judge import (
    CRITERIA,
    BudgetExceeded,
    JudgeClient,
    ResponseCache,
    is_paid_endpoint,
    judge_dialogue,
    judge_pair,
    parse_scores,
    parse_winner,
)

DIALOGUE = [("user", "I failed my exam and I feel worthless."),
            ("assistant", "I'm sorry. Failing one exam doesn't define you. What happened?")]  # fmt: skip
GOOD = '{"Engagement": 4, "Comforting": 5, "Appropriateness": 5, "Suggestion": 2}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD, [4, 5, 5, 2]),
        ("```json\n" + GOOD + "\n```", [4, 5, 5, 2]),
        ("Sure! Here you go: " + GOOD.lower() + " Hope it helps.", [4, 5, 5, 2]),
        (
            '{"Engagement": "4/5", "Comforting": "3", "Appropriateness": 4.5, "Suggestion": 0}',
            [4, 3, 4.5, 0],
        ),
        ("Engagement: 3\nComforting: 4\n**Appropriateness** - 5/5\nSuggestion: 1", [3, 4, 5, 1]),
        ("The supporter was kind and engaged, I'd say quite good overall.", None),
        ('{"Engagement": 7, "Comforting": 4, "Appropriateness": 5, "Suggestion": 2}', None),
        ('{"Engagement": 4, "Comforting": 4}', None),
        ('{"Engagement": true, "Comforting": 4, "Appropriateness": 5, "Suggestion": 2}', None),
        ("", None),
    ],
)
def test_parse_scores(text: str, expected: list[float] | None) -> None:
    parsed = parse_scores(text)
    if expected is None:
        assert parsed is None
    else:
        assert parsed == dict(zip(CRITERIA, map(float, expected), strict=True))


def test_parse_winner_and_paid_detection() -> None:
    assert parse_winner('{"winner": "B"}') == "B"
    assert parse_winner("I think the winner: tie") == "tie"
    assert parse_winner("both are fine") is None
    assert not is_paid_endpoint("http://127.0.0.1:8080/v1")
    assert not is_paid_endpoint("http://localhost/v1")
    assert is_paid_endpoint(None) and is_paid_endpoint("https://api.openai.com/v1")


class Scripted:
    """Answers from a list of callables/strings, one per request; records the requests."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        answer = self.answers[min(len(self.requests) - 1, len(self.answers) - 1)]
        if callable(answer):
            answer = await answer(body)
        return completion_response("scripted", answer, 100, 20)


@pytest.fixture
async def server() -> AsyncIterator[Callable[[Scripted], Any]]:
    runners = []

    async def make(script: Scripted) -> str:
        runner, port = await start(build_app(script))
        runners.append(runner)
        return f"http://127.0.0.1:{port}/v1"

    yield make
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[Callable[..., JudgeClient]]:
    clients: list[JudgeClient] = []

    def make(url: str, **kw: Any) -> JudgeClient:
        cfg = JudgeConfig(base_url=url, model="scripted", max_retries=2, **kw)
        clients.append(JudgeClient(cfg, cache=ResponseCache(tmp_path / "cache.sqlite")))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


async def test_malformed_then_good_is_retried_and_raw_kept(server: Any, make_client: Any) -> None:
    script = Scripted(["I would rate this conversation highly.", GOOD])
    client = make_client(await server(script))
    result = await judge_dialogue(client, DIALOGUE, reference=DIALOGUE)
    assert result.samples == [parse_scores(GOOD)] and not result.errors
    assert result.raw_answers == [["I would rate this conversation highly.", GOOD]]
    # the re-ask carries the malformed answer and asks for the JSON again
    assert script.requests[1]["messages"][-2]["content"].startswith("I would rate")
    assert "JSON" in script.requests[1]["messages"][-1]["content"]
    assert script.requests[0]["response_format"]["type"] == "json_schema"
    assert "REFERENCE" in script.requests[0]["messages"][1]["content"]


async def test_prose_forever_gives_error_not_crash(server: Any, make_client: Any) -> None:
    script = Scripted(["It was a lovely, supportive conversation."])
    client = make_client(await server(script))
    result = await judge_dialogue(client, DIALOGUE)
    assert result.samples == [] and result.mean == {}
    assert "no scores after 3 answers" in result.errors[0]
    assert len(result.raw_answers[0]) == 3 and len(script.requests) == 3


async def test_timeout_is_an_error_with_partial_results(server: Any, make_client: Any) -> None:
    async def slow(_: dict[str, Any]) -> str:
        await asyncio.sleep(3)
        return GOOD

    script = Scripted([GOOD, slow])
    client = make_client(await server(script), timeout_seconds=0.5, samples=2)
    client._client = client._client.with_options(max_retries=0)
    result = await judge_dialogue(client, DIALOGUE)
    assert len(result.samples) == 1  # the first sample survived
    assert result.errors and "Timeout" in result.errors[0]


async def test_cache_and_repeated_samples(server: Any, make_client: Any) -> None:
    answers = [GOOD, GOOD.replace('"Engagement": 4', '"Engagement": 2')]
    script = Scripted(answers)
    url = await server(script)
    result = await judge_dialogue(make_client(url, samples=2, temperature=0.7), DIALOGUE)
    assert result.mean["Engagement"] == 3.0 and result.std["Engagement"] == pytest.approx(2**0.5)
    client2 = make_client(url, samples=2, temperature=0.7)
    again = await judge_dialogue(client2, DIALOGUE)
    assert again.samples == result.samples and len(script.requests) == 2  # all from the cache
    assert client2.spend.cached == 2 and client2.spend.requests == 0


async def test_budget_cap_refuses_paid_endpoint(tmp_path: Path) -> None:
    from evaluation.judge_run import _check_budget
    from scoring.judge import rubric_messages

    cfg = JudgeConfig(base_url="https://api.example.invalid/v1", budget_usd=0.0001)
    client = JudgeClient(cfg, api_key="sk-test")
    assert client.paid and client.estimate_usd([rubric_messages(DIALOGUE)]) > 0
    with pytest.raises(BudgetExceeded, match="budget"):
        _check_budget(client, [rubric_messages(DIALOGUE)] * 100, 1)
    await client.aclose()


async def test_pairwise_both_orders_and_length_bias(server: Any, make_client: Any) -> None:
    script = Scripted(['{"winner": "A"}'])  # a judge that always prefers position A
    client = make_client(await server(script))
    short = [("user", "hi"), ("assistant", "ok")]
    pair = await judge_pair(client, DIALOGUE, short)
    assert (pair.order_ab, pair.order_ba, pair.verdict) == ("first", "second", "inconsistent")
    bias = length_bias([(pair, 60, 2)])
    assert bias["position_a_won_share"] == 1.0 and bias["longer_won_share"] == 0.5


def _write_run(run: Path, generated: str) -> None:
    run.mkdir()
    rows = [{"key": f"d{i}#1", "dialogue_id": f"d{i}", "turn_index": 1, "messages": [],
             "seeker_turns": [f"I feel alone ({i})."], "reference": "You are not alone.",
             "generated": generated} for i in range(3)]  # fmt: skip
    rows.append({"key": "bad", "dialogue_id": "d9"})  # malformed row: skipped, not fatal
    (run / "generations.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


async def test_judge_run_and_pairwise_write_files(server: Any, tmp_path: Path) -> None:
    script = Scripted([GOOD, "prose"] + [GOOD] * 20)
    url = await server(script)
    a, b = tmp_path / "a", tmp_path / "b"
    _write_run(a, "I'm here for you.")
    _write_run(b, "That sounds very lonely, and I'm glad you told me. What happened?")
    cfg = JudgeConfig(base_url=url, model="scripted", max_retries=0, concurrency=1)
    summary = await judge_run(a, cfg)
    assert summary["dialogues"] == 3 and summary["scored"] == 2 and summary["failed"] == ["d1"]
    lines = (a / "judge.jsonl").read_text().splitlines()
    assert json.loads(lines[1])["raw_answers"] == [["prose"]]
    assert json.loads((a / "judge.json").read_text())["criteria"]["Comforting"]["mean"] == 5.0

    async def prefers_b_run(body: dict[str, Any]) -> str:
        shown_a = (
            body["messages"][1]["content"].split("CONVERSATION A:")[1].split("CONVERSATION B:")[0]
        )
        return '{"winner": "A"}' if "glad you told me" in shown_a else '{"winner": "B"}'

    pair_script = Scripted([prefers_b_run])
    pair = await judge_pairwise(
        a, b, cfg.model_copy(update={"base_url": await server(pair_script)})
    )
    assert pair["verdicts"]["second"] == 3
    assert pair["length_bias"]["longer_won_share"] == 1.0


@pytest.mark.slow
async def test_real_model_judge_through_local_server(
    server: Any, tmp_path: Path, smollm2_gguf: Path
) -> None:
    from llama_cpp import Llama

    from evaluation.localserver import llama_handler

    llm = Llama(model_path=str(smollm2_gguf), n_ctx=2048, verbose=False)
    runner, port = await start(build_app(llama_handler(llm)))
    try:
        cfg = JudgeConfig(base_url=f"http://127.0.0.1:{port}/v1", model="smollm2", max_tokens=60)
        client = JudgeClient(cfg, cache=ResponseCache(tmp_path / "c.sqlite"))
        result = await judge_dialogue(client, DIALOGUE)
    finally:
        await runner.cleanup()
    # the JSON-schema grammar makes even a 135M model answer in range
    assert result.samples, result.errors
    assert all(0 <= v <= 5 for v in result.samples[0].values())
    assert client.spend.prompt_tokens > 100
