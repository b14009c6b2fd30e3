"""A minimal OpenAI-compatible chat server (aiohttp) around a local llama.cpp model.

For judging or generating through the OpenAI code path without `llama_cpp.server`'s extra
dependencies (FastAPI, uvicorn, ...): `POST /v1/chat/completions` (a streamed request gets the finished reply as one
server-sent chunk), one request at a time (one model, one context). OpenAI's `response_format: json_schema` is translated to
llama-cpp-python's grammar-constrained `json_object` + `schema`, so small models answer in the
requested JSON. Listens on 127.0.0.1 only.

    python -m evaluation.localserver --model SmolLM2.gguf --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
HOST = "127.0.0.1"


def completion_response(
    model: str, content: str, prompt_tokens: int = 0, completion_tokens: int = 0
) -> dict[str, Any]:
    """An OpenAI chat.completion object holding `content`."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
        "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }  # fmt: skip


def build_app(handler: Handler) -> web.Application:
    """An aiohttp app serving `/v1/chat/completions` with `handler(request_json) -> response`."""

    async def chat(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": {"message": "body is not JSON"}}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return web.json_response({"error": {"message": "messages must be a list"}}, status=400)
        result = await handler(body)
        if not body.get("stream"):
            return web.json_response(result)
        return await _stream(request, result)

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "local", "object": "model"}]})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


async def _stream(request: web.Request, result: dict[str, Any]) -> web.StreamResponse:
    """Send a finished completion as OpenAI server-sent events (one content chunk)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    content = result["choices"][0]["message"]["content"]
    base = {"id": result["id"], "object": "chat.completion.chunk", "created": result["created"],
            "model": result["model"]}  # fmt: skip
    for delta, finish in (({"role": "assistant", "content": content}, None), ({}, "stop")):
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def llama_handler(llm: Any, name: str = "local") -> Handler:
    """A handler that answers with `llm.create_chat_completion` in a worker thread."""
    lock = asyncio.Lock()

    def run(body: dict[str, Any]) -> dict[str, Any]:
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            fmt = {"type": "json_object", "schema": fmt.get("json_schema", {}).get("schema", {})}
        return llm.create_chat_completion(
            messages=body["messages"], temperature=float(body.get("temperature", 0.7)),
            max_tokens=int(body.get("max_tokens") or 256), seed=body.get("seed"),
            top_p=float(body.get("top_p", 0.95)), response_format=fmt,
        )  # fmt: skip

    async def handle(body: dict[str, Any]) -> dict[str, Any]:
        async with lock:  # one llama.cpp context: one request at a time
            result = await asyncio.to_thread(run, body)
        result["model"] = name
        return result

    return handle


async def start(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    """Start `app` on 127.0.0.1 (port 0: any free port); returns (runner, port)."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    sockets = site._server.sockets if site._server else []  # type: ignore[union-attr,attr-defined]
    return runner, sockets[0].getsockname()[1] if sockets else port


def main() -> None:
    """Serve a GGUF until interrupted."""
    from llama_cpp import Llama

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--lora", help="LoRA adapter GGUF")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--n-ctx", type=int, default=4096)
    args = parser.parse_args()
    llm = Llama(model_path=args.model, lora_path=args.lora, n_ctx=args.n_ctx, verbose=False)
    web.run_app(build_app(llama_handler(llm)), host=HOST, port=args.port)


if __name__ == "__main__":
    main()
