"""Toxicity scorers: the offline lexicon (table-driven), Perspective against a local server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp import web

from scoring.config import ToxicityConfig
from scoring.toxicity import (
    ATTRIBUTES,
    LexiconScorer,
    PerspectiveScorer,
    Scorer,
    ToxicityError,
    build_scorer,
    summarize,
)

# (text, attribute that must be high (>= 0.5) or None for "all low" (< 0.35: a bare insult word
# such as "worthless" weighs 0.3 on its own; only a directed insult scores high))
CASES = [
    ("I'm so sorry you're going through this. I'm here to listen.", None),
    ("It sounds like the breakup left you feeling really alone.", None),
    ("I want to kill myself", None),  # self-harm disclosure: a crisis, not a threat to others
    ("I don't want to live anymore", None),
    ("It's not that you are worthless, you are doing two people's job.", None),
    ("I can understand how you feel like you are a failure right now.", None),
    ("Sometimes you will pay as little as $20 a session.", None),
    ("As you said, you freak out before exams.", None),
    ("This is fucking ridiculous", "profanity"),
    ("what the shit is wrong with this", "profanity"),
    ("You are such an idiot", "insult"),
    ("you stupid loser", "insult"),
    ("I'm going to kill you", "threat"),
    ("I know where you live", "threat"),
    ("Just kill yourself", "severe_toxicity"),
    ("Nobody would miss you", "severe_toxicity"),
    ("The world would be better without you", "severe_toxicity"),
    ("All immigrants are criminals", "identity_attack"),
    ("I hate muslims", "identity_attack"),
]


@pytest.fixture(scope="module")
def lexicon() -> LexiconScorer:
    return LexiconScorer.from_path()


@pytest.mark.parametrize(("text", "attribute"), CASES)
def test_lexicon_cases(lexicon: LexiconScorer, text: str, attribute: str | None) -> None:
    scores = lexicon.score_one(text)
    assert set(scores) == set(ATTRIBUTES)
    if attribute is None:
        assert max(scores.values()) < 0.35, scores
    else:
        assert scores[attribute] >= 0.5, scores
        assert scores["toxicity"] >= 0.3, scores


def test_lexicon_is_a_named_scorer(lexicon: LexiconScorer) -> None:
    assert isinstance(lexicon, Scorer)
    assert "offline lexicon" in lexicon.name


def test_summarize_means_per_attribute(lexicon: LexiconScorer) -> None:
    summary = summarize(lexicon, ["you are such an idiot", "thank you for sharing", "hello"])
    assert summary["utterances"] == 3 and summary["scorer"] == lexicon.name
    insult = summary["attributes"]["insult"]
    expected = sum(lexicon.score_one(t)["insult"] for t in ["you are such an idiot"]) / 3
    assert insult["mean"] == pytest.approx(expected)
    assert insult["share_above_0.5"] == pytest.approx(1 / 3)
    empty = summarize(lexicon, [])
    assert empty["utterances"] == 0 and empty["attributes"]["toxicity"]["mean"] is None


def test_build_scorer_choices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PERSPECTIVE_API_KEY", raising=False)
    assert isinstance(build_scorer(ToxicityConfig()), LexiconScorer)
    with pytest.raises(ToxicityError, match="PERSPECTIVE_API_KEY"):
        build_scorer(ToxicityConfig(scorer="perspective"))
    with pytest.raises(ToxicityError, match="not found"):
        build_scorer(
            ToxicityConfig(scorer="detoxify", detoxify_checkpoint=str(tmp_path / "x.ckpt"))
        )
    bad = tmp_path / "lex.json"
    bad.write_text("{not json")
    with pytest.raises(ToxicityError, match="lex.json"):
        build_scorer(ToxicityConfig(scorer="lexicon", lexicon_path=str(bad)))
    monkeypatch.setenv("PERSPECTIVE_API_KEY", "k")
    assert isinstance(build_scorer(ToxicityConfig()), PerspectiveScorer)


async def test_perspective_against_local_server() -> None:
    seen: list[dict] = []
    calls = {"n": 0}

    async def analyze(request: web.Request) -> web.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return web.Response(status=429)  # quota: the scorer must back off and retry
        body = await request.json()
        seen.append(body)
        value = 0.9 if "idiot" in body["comment"]["text"] else 0.01
        scores = {name: {"summaryScore": {"value": value}} for name in body["requestedAttributes"]}
        return web.json_response({"attributeScores": scores})

    app = web.Application()
    app.router.add_post("/v1alpha1/comments:analyze", analyze)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        scorer = PerspectiveScorer(
            "key", f"http://127.0.0.1:{port}/v1alpha1/comments:analyze", qps=50
        )
        scores = await asyncio.to_thread(scorer.score, ["you idiot", "hello"])
    finally:
        await runner.cleanup()
    assert scores[0]["insult"] == 0.9 and scores[1]["toxicity"] == 0.01
    assert set(seen[0]["requestedAttributes"]) == {a.upper() for a in ATTRIBUTES}
    assert seen[0]["doNotStore"] is True
    assert json.dumps(seen)  # requests were plain JSON
