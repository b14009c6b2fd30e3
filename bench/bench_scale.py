"""Many people at once on one machine: the embedded model vs llama.cpp's llama-server with slots.

Each setup runs in its own Python process (so memory and CPU are its own) through the bot's real
path: `Engine.respond` with the real safety layer, SQLite memory in a temporary folder and the
default context builder (hybrid, spaCy compression), the shipped model (the embedded
SmolLM2-135M-Instruct Q4_1 plus Solace's adapter when it is exported), decoding as the bot serves
(`generation`'s defaults: sampled, up to 128 new tokens; a fixed seed per request) — or greedy with
`--greedy` (up to 64 tokens: replies comparable word for word between backends, but ~10 tokens
long with the shipped adapter, so prompt handling dominates and parallel decoding has nothing to
overlap). N people write at once, `MESSAGES_PER_PERSON` messages each, each one sending the next
when the reply is done.

Measured per setup and N: time until the person sees the first text of each reply (p50, p95, the
slowest; and the last person vs the first on the opening message), time until the backend's first
token of it reached the engine (before the guard's hold-back: the difference is the hold-back's
share), replies per minute, CPU
seconds per reply (the bot's process plus the llama-server child, from /proc) and peak resident
memory (both). Setups: `embedded` (llama-cpp in the bot, one reply at a time behind the
engine's lock) and the `llama-server` backend with `--parallel` 1, 4 and 8 — all in one run, all
figures as ratios to the embedded row measured in the same run. This machine is shared and its
load drifts during a run, so the setups run in ROUNDS rounds, the order reversed every round
(each setup's average position is the same, so a steady drift favours none), and each row pools
its rounds; the spread between the embedded rounds is printed as the noise.

    python -m bench --only scale            # writes the section of BENCHMARKS.md
    python -m bench.bench_scale --greedy    # the greedy workload's section, printed
    python -m bench.bench_scale --setup llama-server --parallel 8 --people 8   # one row, JSON
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.scale_report import BASELINE, COLUMNS, noise, pool, row, targets

ROOT = Path(__file__).resolve().parent.parent
PEOPLE = (1, 8, 16)
QUICK_PEOPLE = (1, 8)
PARALLEL = (1, 4, 8)
QUICK_PARALLEL = (8,)
MESSAGES_PER_PERSON = 3
QUICK_MESSAGES_PER_PERSON = 1
ROUNDS = 2
GREEDY_MAX_NEW_TOKENS = 64
N_CTX = 2048
SETUP_TIMEOUT_SECONDS = 3600
SECRET = "bench-scale-secret-0123456789abcdef"
MESSAGES = (
    "I had a rough day at work.",
    "My friend didn't answer my messages.",
    "I keep worrying about my exams.",
    "I feel tired all the time lately.",
    "I don't know how to tell my parents.",
    "Thanks, that helps a little.",
)


def _proc_status(pid: int, key: str) -> float:
    """A /proc/<pid>/status field in MB (VmRSS, VmHWM); 0 when the process is gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` (all its threads) so far."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _generation(greedy: bool) -> dict[str, Any]:
    """The decoding settings of a workload: the bot's own defaults (sampled), or greedy."""
    if greedy:
        return {"max_new_tokens": GREEDY_MAX_NEW_TOKENS, "temperature": 0.0, "top_k": 1, "seed": 1}
    return {"seed": 1}


def _describe_decoding(greedy: bool) -> str:
    from bot.config import GenerationSettings

    g = GenerationSettings(**_generation(greedy))
    if greedy:
        return f"greedy, up to {g.max_new_tokens} new tokens per reply"
    return (
        f"decoding as the bot serves (temperature {g.temperature}, top-p {g.top_p}, up to "
        f"{g.max_new_tokens} new tokens per reply, seed {g.seed} per request: replies differ "
        "between backends, whose samplers differ, so per-token columns put them in proportion)"
    )


def _settings(folder: Path, setup: str, parallel: int, greedy: bool) -> Any:
    from bot.config import Settings

    return Settings(
        model={"backend": setup, "n_ctx": N_CTX, "n_threads": os.cpu_count() or 1},
        llama_server={"parallel": parallel, "missing_binary": "refuse"},
        generation=_generation(greedy),
        memory={"db_path": folder / "solace.db"},
        pseudonym_secret=SECRET,
    )


async def _person(engine: Any, user: str, count: int, out: dict[str, Any], t0: float) -> None:
    from bot.messages import IncomingMessage

    for index in range(count):
        text = MESSAGES[(int(user) + index) % len(MESSAGES)]
        sent = time.perf_counter()
        _FIRST_TOKEN.pop(asyncio.current_task(), None)
        first, reply = None, ""
        async for piece in engine.respond(IncomingMessage("telegram", user, text)):
            if first is None and piece.strip():
                first = time.perf_counter() - sent
            reply += piece
        done = time.perf_counter() - sent
        out["first"].append(first if first is not None else done)
        out["first_token"].append(_FIRST_TOKEN.pop(asyncio.current_task(), sent + done) - sent)
        if index == 0:
            out["opening"].append(first if first is not None else done)
        out["replies"][f"{user}:{index}"] = reply
        out["kind_errors"] += int(reply.endswith("Please try again in a moment."))
        out["end"] = max(out["end"], time.perf_counter() - t0)


async def _workload(engine: Any, people: int, count: int, server_pid: int | None) -> dict[str, Any]:
    """`people` at once, `count` messages each, after one untimed warm-up reply."""
    from bot.messages import IncomingMessage

    for user in range(people):  # the consent notice is not what we measure
        engine.memory.mark_notice_seen(engine.memory.pseudonym("telegram", str(user)), "telegram")
    await engine.warm_up()  # what `solace serve` does before it starts the adapters
    async for _ in engine.respond(IncomingMessage("telegram", "warm-up", "Hello there.")):
        pass
    pids = [os.getpid(), *([server_pid] if server_pid else [])]
    cpu_before = [_cpu_seconds(p) for p in pids]
    tokens_before = _prompt_tokens(engine.backend)
    out: dict[str, Any] = {"first": [], "opening": [], "first_token": [], "replies": {}}
    out |= {"kind_errors": 0, "end": 0.0}
    t0 = time.perf_counter()
    await asyncio.gather(*(_person(engine, str(u), count, out, t0) for u in range(people)))
    out["seconds"] = time.perf_counter() - t0
    cpu = [_cpu_seconds(p) - before for p, before in zip(pids, cpu_before, strict=True)]
    out["cpu_seconds"], out["bot_cpu_seconds"] = sum(cpu), cpu[0]
    out["prompt_tokens"] = [
        a - b for a, b in zip(_prompt_tokens(engine.backend), tokens_before, strict=True)
    ]
    out["rss_mb"] = sum(_proc_status(p, "VmHWM") for p in pids)
    # Replies differ between setups (batched arithmetic differs in the last bits): the tokens
    # each one shows the person, counted with the GGUF's tokenizer, put CPU/reply in proportion.
    out["reply_tokens"] = sum(engine.backend.count_tokens(r) for r in out["replies"].values())
    return out


def _prompt_tokens(backend: Any) -> tuple[int, int]:
    """(reused, evaluated) prompt tokens so far, from llama-server's timings; (0, 0) otherwise."""
    return (
        getattr(backend, "prompt_tokens_reused", 0),
        getattr(backend, "prompt_tokens_evaluated", 0),
    )


# When each person's task last got a non-blank chunk from the backend, before the guard.
_FIRST_TOKEN: dict[asyncio.Task[Any] | None, float] = {}


def _time_first_tokens() -> None:
    """Note, per asyncio task (one per person), when the backend's first non-blank chunk of a
    reply reaches the engine: the engine's stream from the backend thread, wrapped."""
    from bot.engine import engine as engine_module

    real = engine_module.stream_in_thread

    async def timed(*args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        async with contextlib.aclosing(real(*args, **kwargs)) as chunks:
            async for chunk in chunks:
                if task not in _FIRST_TOKEN and chunk.strip():
                    _FIRST_TOKEN[task] = time.perf_counter()
                yield chunk

    engine_module.stream_in_thread = timed  # type: ignore[assignment]


def _holdback() -> int:
    from bot.config import GenerationSettings

    return int(GenerationSettings.model_fields["holdback_chars"].default)


def run_setup(
    setup: str, parallel: int, people: tuple[int, ...], count: int, greedy: bool = False
) -> dict[str, Any]:
    """One setup (in this process): every workload in `people`, a fresh database for each."""
    from bot.backends import build_backend, close_backend
    from bot.engine import build_engine
    from bot.memory import open_memory

    _time_first_tokens()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="solace-bench-scale-") as tmp:
        settings = _settings(Path(tmp), setup, parallel, greedy)
        backend = build_backend(settings)
        process = getattr(backend, "process", None)
        try:
            for n in people:
                memory = open_memory(Path(tmp) / f"people-{n}.db", SECRET.encode())
                engine = build_engine(settings, backend=backend, memory=memory)
                pid = process.pid if process is not None else None
                results[str(n)] = asyncio.run(_workload(engine, n, count, pid))
                memory.db.close()
        finally:
            close_backend(backend)
    return results


def _child(
    setup: str, parallel: int, people: tuple[int, ...], count: int, greedy: bool
) -> dict[str, Any]:
    """run_setup in a fresh Python process; its JSON result."""
    cmd = [sys.executable, "-m", "bench.bench_scale", "--setup", setup, "--parallel", str(parallel),
           "--count", str(count), "--people", *map(str, people),
           *(["--greedy"] if greedy else [])]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=SETUP_TIMEOUT_SECONDS
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{setup} --parallel {parallel} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool, greedy: bool = False) -> str:
    """Every setup, one after another in this run; the Markdown section."""
    from bot.backends.llama_server_command import find_binary

    if find_binary(None) is None:
        return "## Many people at once\n\nSkipped: llama-server is not built (`make llama-server`)."
    people = QUICK_PEOPLE if quick else PEOPLE
    count = QUICK_MESSAGES_PER_PERSON if quick else MESSAGES_PER_PERSON
    load_before = os.getloadavg()
    setups = {BASELINE: ("llama-cpp", 1)}
    for parallel in QUICK_PARALLEL if quick else PARALLEL:
        setups[f"llama-server --parallel {parallel}"] = ("llama-server", parallel)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in setups}
    for index in range(1 if quick else ROUNDS):
        order = list(setups) if index % 2 == 0 else list(reversed(setups))
        for name in order:
            rounds[name].append(_child(*setups[name], people, count, greedy))
    load_after = os.getloadavg()
    rows = {name: pool(results, people) for name, results in rounds.items()}
    base = rows[BASELINE]
    lines = [
        "## Many people at once: embedded model vs llama-server slots",
        "",
        f"The bot's real path (`Engine.respond`: safety layer, SQLite memory, hybrid context) with "
        f"SmolLM2-135M-Instruct Q4_1 (+ Solace's adapter when exported), "
        f"{_describe_decoding(greedy)}, {N_CTX}-token context per conversation, "
        f"{count} message(s) per person, {os.cpu_count()} CPU cores, every setup with "
        f"{os.cpu_count()} threads. First text = the first released text of a reply (after "
        "the guard's hold-back), from the moment the message arrived; first token = when the "
        "backend's first text of it reached the engine, before the guard's hold-back (text a "
        "guard rule could still be matching and the unfinished last word, plus "
        f"`generation.holdback_chars` = {_holdback()}; the difference is the hold-back's "
        "share). Ratios are to the "
        f"embedded row of the same table. Every setup ran {len(rounds[BASELINE])} time(s), the "
        "order reversed each round (a steady drift of the shared machine's load favours none); "
        "a row pools its rounds.",
        f"Load average (1/5/15 min) before: {' / '.join(f'{x:.1f}' for x in load_before)}, "
        f"after: {' / '.join(f'{x:.1f}' for x in load_after)}.",
        *noise(rounds[BASELINE], people),
    ]
    for n in people:
        lines += [
            "",
            f"**{n} {'person' if n == 1 else 'people'} writing at once**",
            "",
            "| " + " | ".join(COLUMNS) + " |",
            "| --- |" + " ---: |" * (len(COLUMNS) - 1),
        ]
        for name, result in rows.items():
            lines.append(row(name, result[str(n)], base[str(n)], compare_replies=greedy))
    lines += ["", *targets(rows, people)]
    return "\n".join(lines)


def main() -> int:
    """One setup in this process; prints its JSON result (used by run())."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scale")
    parser.add_argument("--setup", choices=["llama-cpp", "llama-server"], default=None)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--people", type=int, nargs="+", default=[8])
    parser.add_argument("--count", type=int, default=MESSAGES_PER_PERSON)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--greedy", action="store_true", help="greedy decoding, 64 tokens")
    args = parser.parse_args()
    if args.setup is None:
        print(run(args.quick, args.greedy))
        return 0
    result = run_setup(args.setup, args.parallel, tuple(args.people), args.count, args.greedy)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
