"""The `openai` backend: any OpenAI-compatible chat endpoint (vLLM, llama.cpp's server, ...),
streamed; retries with backoff are the client's."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from bot.backends.base import GenOptions
from bot.backends.prompt_render import neutralise_control_tokens, neutralise_messages
from bot.errors import BackendError
from dialogue.prompts import Message

if TYPE_CHECKING:
    from bot.config import Settings

# Remote servers do not tell us their tokenizer; ~3 UTF-8 bytes per token errs on the safe side
# for English BPE vocabularies (typical is ~4), so the context budget is not overrun.
APPROX_BYTES_PER_TOKEN = 3


class OpenAIBackend:
    """An OpenAI-compatible chat endpoint, streamed; retries with backoff are the client's."""

    name = "openai"
    parallel = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_seconds: float = 60.0,
        max_retries: int = 3,
        n_ctx: int = 4096,
        send_top_k: bool = True,
    ) -> None:
        import openai

        # The client retries connection errors, 408/409/429 and 5xx with exponential backoff.
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or "no-key",  # local servers accept any key; the client needs one
            timeout=timeout_seconds,
            max_retries=max_retries,
        )
        self.base_url = base_url
        self.model = model
        self.n_ctx = n_ctx
        self.send_top_k = send_top_k

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIBackend:
        """Build from `[openai]`; the key comes from SOLACE_OPENAI_API_KEY only."""
        o = settings.openai
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return cls(
            o.base_url,
            o.model,
            api_key=key,
            timeout_seconds=o.timeout_seconds,
            max_retries=o.max_retries,
            n_ctx=o.context_tokens,
            send_top_k=o.send_top_k,
        )

    def generate(
        self,
        messages: Sequence[Message],
        options: GenOptions,
        *,
        extra_body: dict[str, Any] | None = None,
        on_extra: Callable[[dict[str, Any]], None] | None = None,
    ) -> Iterator[str]:
        """Stream chat completion deltas; any transport or API failure becomes BackendError.

        The server applies the chat template and parses special tokens in the rendered prompt
        (llama.cpp's server and llama-cpp-python's both do), so every content is sent with its
        control-token strings neutralised (bot/backends/prompt_render.py).

        Args:
            extra_body: server-specific request fields (llama-server: cache_prompt, id_slot).
            on_extra: called with a chunk's non-OpenAI fields when it has some (timings).
        """
        import httpx
        import openai

        extra = {"top_k": options.top_k} if self.send_top_k and options.top_k else {}
        extra |= extra_body or {}
        try:
            stream: Any = self._client.chat.completions.create(
                model=self.model,
                messages=cast(Any, neutralise_messages(messages)),
                stream=True,
                temperature=options.temperature,
                top_p=options.top_p,
                max_tokens=options.max_new_tokens,
                seed=options.seed,
                stop=list(options.stop) if options.stop else None,
                extra_body=extra or None,
            )
            for chunk in stream:
                if on_extra is not None and chunk.model_extra:
                    on_extra(chunk.model_extra)
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except (openai.APIError, httpx.HTTPError) as exc:
            raise BackendError(f"model server {self.base_url}: {type(exc).__name__}") from exc
        except (ValueError, AttributeError, TypeError, IndexError) as exc:  # not JSON, bad shape
            raise BackendError(f"model server {self.base_url}: malformed stream") from exc

    def count_tokens(self, text: str) -> int:
        """An upper estimate of `text` as sent (neutralised): the server's tokenizer is not
        available here."""
        sent = neutralise_control_tokens(text)
        return -(-len(sent.encode("utf-8")) // APPROX_BYTES_PER_TOKEN)
