"""The semantic layer (issue 17): encoder, classifier artifact, combination with the rules,
conversation-level risk, and failing soft.

Tests that need the real encoder GGUF (`make encoder`) are marked slow and skip cleanly without it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bot.safety import SafetyLayer, screen_message
from bot.safety.context import (
    RISK_HALF_LIFE_SECONDS,
    LayeredScreen,
    RiskState,
    combine,
    context_text,
)
from bot.safety.semantic import (
    DEFAULT_CLASSIFIER_PATH,
    DEFAULT_ENCODER_PATH,
    EMBEDDING_DIM,
    MAX_CHUNKS,
    SemanticClassifier,
    SemanticError,
    SemanticScore,
    SemanticScreen,
    build_semantic,
    check_gguf,
    chunk_text,
)

needs_encoder = pytest.mark.skipif(
    not DEFAULT_ENCODER_PATH.is_file(), reason="run `make encoder` for the GGUF encoder"
)


def artifact(**thresholds: float) -> dict:
    """A well-formed classifier artifact with small deterministic weights."""
    rng = np.random.default_rng(0)
    base = dict.fromkeys(
        (
            "crisis",
            "concern",
            "context_crisis",
            "context_concern",
            "raised_crisis",
            "raised_concern",
        ),
        0.5,
    )
    return {
        "crisis_head": {
            "classes": [
                "none",
                "suicide",
                "self_harm",
                "abuse",
                "harm_to_others",
                "medical_emergency",
            ],
            "coef": rng.normal(size=(6, EMBEDDING_DIM)).tolist(),
            "intercept": [0.0] * 6,
            "platt": [1.0, 0.0],
        },
        "flag_head": {
            "coef": rng.normal(size=EMBEDDING_DIM).tolist(),
            "intercept": 0.0,
            "platt": [1.0, 0.0],
        },
        "thresholds": {**base, **thresholds},
    }


class RowEncoder:
    """Encodes every text as the same unit vector (or raises): exercises the screen's plumbing."""

    def __init__(self, vector: np.ndarray | None = None, error: Exception | None = None) -> None:
        self.vector = vector
        self.error = error
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        if self.error is not None:
            raise self.error
        return np.tile(self.vector, (len(texts), 1))


# --- chunks and artifact ---------------------------------------------------------------------


def test_short_message_is_one_chunk_long_one_is_bounded() -> None:
    assert chunk_text("  I feel   so alone ") == ["I feel so alone"]
    assert chunk_text("   ") == []
    long = " ".join(f"w{i}" for i in range(120))
    chunks = chunk_text(long)
    assert 1 < len(chunks) <= MAX_CHUNKS
    assert chunks[0].split()[0] == "w0" and chunks[-1].split()[-1] == "w119"  # ends are read
    huge = chunk_text("word " * 100_000)
    assert len(huge) == MAX_CHUNKS


def test_classifier_artifact_is_validated() -> None:
    good = artifact()
    clf = SemanticClassifier(good)
    scores = clf.score_embeddings(np.eye(EMBEDDING_DIM, dtype=np.float32)[:3])
    assert len(scores) == 3 and all(
        0.0 <= s.p_crisis <= 1.0 and 0.0 <= s.p_flag <= 1.0 for s in scores
    )
    bad = json.loads(json.dumps(good))
    bad["crisis_head"]["coef"] = bad["crisis_head"]["coef"][:3]
    with pytest.raises(SemanticError, match="384"):
        SemanticClassifier(bad)
    with pytest.raises(SemanticError, match="malformed"):
        SemanticClassifier({"crisis_head": {}})


def test_shipped_artifact_loads_and_names_its_training() -> None:
    clf = SemanticClassifier.load(DEFAULT_CLASSIFIER_PATH)
    th = clf.thresholds
    assert 0 < th.raised_crisis <= th.crisis < 1 and 0 < th.raised_concern <= th.concern < 1
    assert th.context_crisis >= th.crisis
    assert clf.meta["data"]["esconv_seeker_turns"] > 19_000
    assert DEFAULT_CLASSIFIER_PATH.stat().st_size < 1_000_000  # prototypes: ~1,600 int8 vectors


# --- combination with the rules ----------------------------------------------------------------


def screen_with(p_crisis: float, p_flag: float) -> SemanticScreen:
    return SemanticScreen(RowEncoder(np.zeros(EMBEDDING_DIM)), SemanticClassifier(artifact(
        crisis=0.6, concern=0.5, context_crisis=0.8, context_concern=0.7,
        raised_crisis=0.4, raised_concern=0.3,
    )))  # fmt: skip


@pytest.mark.parametrize(
    "rule_text,single,context,raised,expected",
    [
        ("I want to kill myself", (0.0, 0.0), None, False, ("crisis", "suicide/")),
        ("nice weather today", (0.7, 0.9), None, False, ("crisis", "semantic:")),
        ("nice weather today", (0.5, 0.55), None, False, ("concern", "semantic:")),
        ("nice weather today", (0.5, 0.4), None, False, ("none", None)),
        ("nice weather today", (0.5, 0.4), None, True, ("crisis", "semantic:")),
        ("nice weather today", (0.1, 0.35), None, True, ("concern", "semantic:")),
        ("nice weather today", (0.1, 0.1), (0.85, 0.9), False, ("crisis", "context:")),
        ("nice weather today", (0.1, 0.1), (0.5, 0.75), False, ("concern", "context:")),
        # a hit the context rules softened (past) stays concern whatever the model says
        ("I attempted suicide years ago", (0.99, 0.99), None, False, ("concern", "suicide/")),
    ],
)
def test_rule_hits_stay_and_the_model_raises_only_none(
    rule_text, single, context, raised, expected
) -> None:
    semantic = screen_with(0, 0)
    rule = screen_message(rule_text)
    s = SemanticScore(single[0], single[1], "self_harm")
    c = None if context is None else SemanticScore(context[0], context[1], "suicide")
    result = combine(rule, s, c, semantic, raised=raised)
    assert result.level == expected[0]
    if expected[1] is None:
        assert result.matched is None
    else:
        assert result.matched.startswith(expected[1])
    assert result.crisis == (expected[0] == "crisis")


@pytest.mark.parametrize(
    "text,reads",
    [
        ("I cut myself shaving this morning", ""),  # the accident rule judged every word
        (
            "I'm not going to kill myself, but I wrote letters to everyone and gave the dog away",
            "but i wrote letters to everyone and gave the dog away",
        ),
        ("I sorted out who gets my records", "I sorted out who gets my records"),  # no rule: raw
        ("I want to kill myself", "I want to kill myself"),  # a hit: the model is not asked
    ],
)
def test_the_model_does_not_read_what_the_context_rules_cancelled(text: str, reads: str) -> None:
    from bot.safety.context import semantic_input

    assert semantic_input(text) == reads


def test_a_message_the_context_rules_fully_cancelled_is_not_scored() -> None:
    encoder = RowEncoder(np.ones(EMBEDDING_DIM) / np.sqrt(EMBEDDING_DIM))
    screen = LayeredScreen(SemanticScreen(encoder, SemanticClassifier(artifact(crisis=0.0))))
    assert screen.screen("I cut myself shaving this morning").result.level == "none"
    assert encoder.calls == []  # nothing left to read: the model never saw "cut myself"


def test_context_is_the_last_turns_joined_and_bounded() -> None:
    assert context_text([], "bye") is None
    joined = context_text(["a", "b", "c", "d" * 5000], "bye")
    assert joined is not None and joined.startswith("b . c . ") and joined.endswith(" . bye")
    assert len(joined) < 2_100 + 10


def test_risk_state_decays_and_raises() -> None:
    state = RiskState().after("concern", 0.0)
    assert state.raised(0.0) and not state.raised(RISK_HALF_LIFE_SECONDS)
    assert RiskState().after("none", 5.0).score == 0.0
    crisis = RiskState().after("crisis", 0.0)
    assert crisis.raised(RISK_HALF_LIFE_SECONDS) and not crisis.raised(3 * RISK_HALF_LIFE_SECONDS)
    assert state.decayed(RISK_HALF_LIFE_SECONDS).score == pytest.approx(0.5)


# --- failing soft ------------------------------------------------------------------------------


def test_missing_or_corrupt_encoder_leaves_the_rules_running(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.ERROR)
    semantic, status = build_semantic(tmp_path / "absent.gguf")
    assert semantic is None and status.startswith("off:") and "make encoder" in status
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all" * 100)
    assert build_semantic(junk)[0] is None
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\x00" * 64)
    semantic, status = build_semantic(truncated)
    assert semantic is None and "could not load" in status
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.safety.semantic"]
    assert len(lines) == 3 and all("rules keep running" in line for line in lines)
    with pytest.raises(SemanticError):
        check_gguf(tmp_path)


async def test_encoder_error_mid_run_keeps_rules_and_reports_status(caplog) -> None:
    caplog.set_level(logging.WARNING)
    broken = SemanticScreen(RowEncoder(error=RuntimeError("boom")), SemanticClassifier(artifact()))
    layer = SafetyLayer(semantic=broken)
    assert (await layer.screen("I want to kill myself")).crisis  # rules need no encoder
    result = await layer.screen("some ordinary words", ["earlier words"])
    assert result.level == "none" and layer.semantic_status.startswith("failing")
    await layer.screen("more words")
    errors = [r for r in caplog.records if r.name == "bot.safety.semantic"]
    assert len(errors) == 1 and "boom" not in errors[0].getMessage()  # one line, no text
    broken._encoder.error = None
    broken._encoder.vector = np.zeros(EMBEDDING_DIM)
    await layer.screen("fine now")
    assert layer.semantic_status == "ready"


@pytest.mark.parametrize("text", ["", "\x00\x01\x02", "é" * 100_000, "字" * 5000, "🙂" * 3000])
def test_hostile_input_through_the_layered_screen(text: str) -> None:
    encoder = RowEncoder(np.zeros(EMBEDDING_DIM))
    screen = LayeredScreen(SemanticScreen(encoder, SemanticClassifier(artifact())))
    verdict = screen.screen(text, ["x" * 50_000])
    assert verdict.result.level in ("none", "concern", "crisis")
    assert all(len(batch) <= 2 * MAX_CHUNKS for batch in encoder.calls)


# --- the real encoder ----------------------------------------------------------------------------


@pytest.mark.slow
@needs_encoder
def test_real_encoder_embeds_and_matches_sentence_transformers() -> None:
    from bot.safety.semantic import SentenceEncoder

    encoder = SentenceEncoder(DEFAULT_ENCODER_PATH)
    texts = ["I want to end my life", "I wish I were dead", "what a lovely sunny day", ""]
    emb = encoder.embed(texts)
    assert emb.shape == (4, EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(emb[:3], axis=1), 1.0, atol=1e-4)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2
    st = pytest.importorskip("sentence_transformers")
    from bot.safety.semantic_data import minilm_dir

    reference = st.SentenceTransformer(str(minilm_dir()), device="cpu")
    ref = reference.encode(texts[:3], normalize_embeddings=True)
    assert (ref * emb[:3]).sum(axis=1).min() > 0.999


@pytest.mark.slow
@needs_encoder
async def test_real_layer_catches_paraphrases_the_rules_miss() -> None:
    semantic, status = build_semantic()
    assert status == "ready"
    layer = SafetyLayer(semantic=semantic)
    # Written for this test, not taken from any case file.
    # A plain plan with the means ready. The subtler "sorted out who gets my record collection and
    # left a note for my sister on the fridge" scores P(crisis) 0.78 under the 2026-12-07
    # artifact, below its threshold of 0.86 (docs/safety.md: indirect recall is not reached).
    plan = "the note is written and the pills are counted out on my desk"
    assert not screen_message(plan).crisis
    assert (await layer.screen(plan)).crisis
    assert (await layer.screen("what time does the bakery on the corner open")).level == "none"


@pytest.mark.slow
@needs_encoder
def test_the_bot_runs_without_torch(tmp_path: Path) -> None:
    """The bot's process never needs torch: with torch and transformers unimportable, the whole
    bot imports, builds its engine with the semantic layer and answers through it."""
    code = (
        "import sys\n"
        "for name in ('torch', 'transformers', 'sentence_transformers', 'sklearn'):\n"
        "    sys.modules[name] = None  # import fails\n"
        "import asyncio\n"
        "import bot.cli, bot.serve, bot.adapters.telegram, bot.adapters.discord\n"
        "from bot.config import Settings\n"
        "from bot.engine import build_engine\n"
        "from bot.messages import IncomingMessage\n"
        f"s = Settings(model={{'backend': 'echo'}}, memory={{'db_path': {str(tmp_path / 'm.db')!r}}})\n"
        "engine = build_engine(s, allow_secret_file=True)\n"
        "assert engine.safety.semantic_status == 'ready', engine.safety.semantic_status\n"
        "async def main():\n"
        "    msg = IncomingMessage('console', 'u', 'hello there')\n"
        "    return ''.join([p async for p in engine.respond(msg)])\n"
        "print(bool(asyncio.run(main())), 'torch' in sys.modules and sys.modules['torch'] is not None)\n"
    )
    env = {**os.environ, "SOLACE_PSEUDONYM_SECRET": "ab" * 32}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path.cwd(), env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "False"]


# --- through the engine: bad input and a broken model file -------------------------------------


def _engine(settings, tmp_path: Path, **safety):
    from bot.engine import build_engine

    s = settings.model_copy(update={"safety": settings.safety.model_copy(update=safety)})
    return build_engine(s, allow_secret_file=True)


async def _say(engine, text: str) -> str:
    from bot.messages import IncomingMessage

    return "".join([p async for p in engine.respond(IncomingMessage("console", "u9", text))])


async def test_a_corrupt_encoder_file_leaves_the_rules_and_a_reply(
    settings, tmp_path: Path, caplog, monkeypatch
) -> None:
    """Issue 17: a corrupt model file - one operator line naming it, no text; crisis still caught."""
    monkeypatch.setenv("SOLACE_PSEUDONYM_SECRET", "cd" * 32)
    caplog.set_level(logging.INFO)
    corrupt = tmp_path / "encoder.gguf"
    corrupt.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    engine = _engine(settings, tmp_path, encoder_path=corrupt)
    assert engine.safety.semantic_status == "off"
    crisis = await _say(engine, "I am going to kill myself tonight")
    assert "not a therapist or an emergency service" in crisis
    assert await _say(engine, "\x00\x01\x02 binary \xff junk")  # a reply, whatever it is
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.safety.semantic"]
    assert len(lines) == 1 and "encoder.gguf" in lines[0] and "rules keep running" in lines[0]
    assert not any("kill myself" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
@needs_encoder
@pytest.mark.parametrize(
    "text",
    [
        "we talked about the garden for a while. " * 2600,  # ~100,000 characters
        "\x00\x1b[2J" + bytes(range(1, 128)).decode("latin-1") * 40,
        "Ich fühle mich heute sehr allein und weiß nicht, mit wem ich reden soll.",
        "我今天很难过，不知道该和谁说话。" * 20,
        "🙂" * 4000,
    ],
)
async def test_hostile_input_through_the_engine_with_the_real_layer(
    settings, tmp_path: Path, text: str, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("SOLACE_PSEUDONYM_SECRET", "cd" * 32)
    engine = _engine(settings, tmp_path)
    assert engine.safety.semantic_status == "ready"
    assert (await _say(engine, text)).strip()
    assert engine.safety.semantic_status == "ready"
    assert not any(text[:30] in r.getMessage() for r in caplog.records)
