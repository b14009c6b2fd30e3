"""Model backends: a small protocol that streams reply text, and one module per implementation.

`llama-cpp` (bot/backends/llama_cpp.py, the default: a local GGUF), `openai` (an
OpenAI-compatible server) and `echo` (tests). `build_backend(settings)` picks one from
`BACKENDS`. llama_cpp is imported only when a llama-cpp backend is built.
"""

from bot.backends.base import Backend, GenOptions, gen_options, stream_in_thread
from bot.backends.echo import EchoBackend
from bot.backends.llama_cpp import LlamaCppBackend
from bot.backends.openai import OpenAIBackend
from bot.backends.registry import BACKENDS, build_backend

__all__ = [
    "BACKENDS",
    "Backend",
    "EchoBackend",
    "GenOptions",
    "LlamaCppBackend",
    "OpenAIBackend",
    "build_backend",
    "gen_options",
    "stream_in_thread",
]
