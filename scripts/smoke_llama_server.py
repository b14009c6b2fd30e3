"""Check that the llama-server `make llama-server` built answers a real request.

Run after building it: starts the binary on 127.0.0.1 (a free port, a fresh API key) with the
embedded SmolLM2 GGUF through the bot's own process manager
(bot/backends/llama_server_process.py), streams one short completion through the OpenAI-compatible backend, and stops it. A binary that cannot run
here (missing library, unsupported CPU kernels) fails now, with a clear message, not in the
middle of someone's chat.
"""

from __future__ import annotations

import sys
import time


def main() -> int:
    """Start, ask, stop; exit status 0 when a reply came back."""
    from bot.backends import GenOptions, OpenAIBackend
    from bot.backends.llama_server_command import ServerCommand, find_binary
    from bot.backends.llama_server_process import LlamaServerProcess
    from bot.backends.model_files import embedded_model_path
    from bot.errors import SolaceError

    binary, model = find_binary(None), embedded_model_path()
    if binary is None or model is None:
        print(f"llama-server smoke test: binary {binary}, model {model}", file=sys.stderr)
        return 1
    command = ServerCommand(
        binary, model, None, parallel=2, ctx_per_slot=512, threads=2, cache_mb=0
    )
    process = LlamaServerProcess(command, startup_timeout=120)
    started = time.perf_counter()
    try:
        endpoint = process.start()
        client = OpenAIBackend(endpoint.base_url, "solace", api_key=endpoint.api_key, n_ctx=512)
        messages = [{"role": "user", "content": "Say hello in five words."}]
        reply = "".join(client.generate(messages, GenOptions(max_new_tokens=12, temperature=0)))
    except SolaceError as exc:
        print(f"llama-server failed its smoke test: {exc}", file=sys.stderr)
        return 1
    finally:
        process.close()
    if not reply.strip():
        print("llama-server failed its smoke test: an empty reply", file=sys.stderr)
        return 1
    took = time.perf_counter() - started
    print(f"llama-server works: {binary} answered {len(reply)} chars in {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
