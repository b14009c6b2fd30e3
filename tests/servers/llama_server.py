#!/usr/bin/env python3
"""A stand-in for the `llama-server` executable, for the failure modes the real one cannot be
made to show on demand: `/health` answering 503 while "loading", streams that are not valid
server-sent JSON, and 503 on every completion. It takes llama-server's command line (ignoring
what it does not use) plus `--fake-mode MODE`, passed through `llama_server.extra_args`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from aiohttp import web

LOADING_SECONDS = 1.5
REPLY = ["I hear ", "you. ", "That sounds ", "hard."]


def build_app(mode: str) -> web.Application:
    """The fake server's routes for `mode` (ok, loading, malformed, unavailable)."""
    started = time.monotonic()

    def loading() -> web.Response | None:
        if mode == "loading" and time.monotonic() - started < LOADING_SECONDS:
            return web.json_response(
                {"error": {"message": "Loading model", "code": 503}}, status=503
            )
        return None

    async def health(_: web.Request) -> web.Response:
        return loading() or web.json_response({"status": "ok"})

    async def slots(_: web.Request) -> web.Response:
        return web.json_response([{"id": 0, "n_ctx": 512, "is_processing": False}])

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.json()
        busy = loading()
        if busy is not None:
            return busy
        if mode == "unavailable":
            return web.json_response({"error": {"message": "busy", "code": 503}}, status=503)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in REPLY:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}}], "object": "chat.completion.chunk",
                     "id": "x", "created": 0, "model": "solace"}  # fmt: skip
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if mode == "malformed":
                await response.write(b'data: {"choices": [{"delta": {"content": "oops"\n\n')
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/slots", slots)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def main() -> int:
    """Parse llama-server's flags; `--version` prints a version like the real one."""
    if "--version" in sys.argv:
        print("version: 0 (fake)\nbuilt with a test", file=sys.stderr)
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--fake-mode", default="ok")
    args, _ = parser.parse_known_args()
    print(f"fake llama-server on {args.host}:{args.port} ({args.fake_mode})", flush=True)
    web.run_app(build_app(args.fake_mode), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop(asyncio.new_event_loop())
    sys.exit(main())
