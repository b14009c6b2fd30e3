"""Model backends: a small protocol that streams reply text, and one module per implementation.

`llama-cpp` (bot/backends/llama_cpp.py, the default outside `solace serve`: a local GGUF),
`llama-server` (bot/backends/llama_server.py: llama.cpp's server with parallel slots as a managed
child process, the default of `solace serve`), `openai` (an OpenAI-compatible server) and `echo`
(tests). `build_backend(settings)` picks one from `BACKENDS`. llama_cpp is imported only when a
llama-cpp backend is built (or a llama-server backend reads its GGUF's tokenizer).
"""

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from bot.backends.base import (
        Backend as Backend,
        GenOptions as GenOptions,
        close_backend as close_backend,
        gen_options as gen_options,
        reply_threads as reply_threads,
        stream_in_thread as stream_in_thread,
        warm_up_backend as warm_up_backend,
    )
    from bot.backends.echo import EchoBackend as EchoBackend
    from bot.backends.llama_cpp import LlamaCppBackend as LlamaCppBackend
    from bot.backends.llama_server import LlamaServerBackend as LlamaServerBackend
    from bot.backends.openai import OpenAIBackend as OpenAIBackend
    from bot.backends.registry import (
        AUTO_BACKEND as AUTO_BACKEND,
        BACKENDS as BACKENDS,
        build_backend as build_backend,
    )

__getattr__, __dir__ = lazy_exports(__name__)
