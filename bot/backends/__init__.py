"""Model backends: a small protocol that streams reply text, and one module per implementation.

`llama-cpp` (bot/backends/llama_cpp.py, the default: a local GGUF), `openai` (an
OpenAI-compatible server) and `echo` (tests). `build_backend(settings)` picks one from
`BACKENDS`. llama_cpp is imported only when a llama-cpp backend is built.
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from bot.backends.base import (
        Backend as Backend,
        GenOptions as GenOptions,
        gen_options as gen_options,
        stream_in_thread as stream_in_thread,
    )
    from bot.backends.echo import EchoBackend as EchoBackend
    from bot.backends.llama_cpp import LlamaCppBackend as LlamaCppBackend
    from bot.backends.openai import OpenAIBackend as OpenAIBackend
    from bot.backends.registry import (
        BACKENDS as BACKENDS,
        build_backend as build_backend,
    )

__getattr__, __dir__ = lazy_exports(__name__)
