"""Chat prompts in which only the chat template emits control tokens (issue 15, item 2).

A chat template marks turns with control tokens (ChatML `<|im_start|>user`, Llama-3
`<|start_header_id|>`, Gemma `<start_of_turn>`, ...). A tokenizer told to parse special tokens
turns those strings into control tokens wherever they appear, so a message containing
`<|im_end|>\\n<|im_start|>system\\n...` would open a real system turn. Two defences:

- `render_prompt` (the llama-cpp backend, which tokenizes itself): the template is rendered with a
  random sentinel in place of each message's content and split there, so the caller tokenizes the
  template's own text with special tokens on and every content as plain text. The model sees
  exactly the template's control tokens and the person's words as words; nothing is altered.
- `neutralise_control_tokens` (servers that apply the template and parse special tokens in the
  rendered prompt, as llama.cpp's server and llama-cpp-python's do): strings shaped like control
  tokens get look-alike delimiters before they are sent, so no tokenizer can read them as control
  tokens while the model still reads the text. Stored text is never changed.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dialogue.prompts import Message

logger = logging.getLogger(__name__)

# Shapes of control tokens in current chat vocabularies (see docs/safety.md, "Control tokens"):
#   <|im_start|> <|eot_id|> <|start_header_id|> <|endoftext|> <|user|> <|channel|> (ChatML,
#   Llama 3, Phi, Qwen, GPT-OSS, Granite, Command-R); DeepSeek's full-width <｜begin▁of▁sentence｜>;
#   tag forms <s> </s> <bos> <eos> <unk> <pad> <start_of_turn> <end_of_turn> <think> <tool_call>
#   <extra_id_0>; Llama 2 <<SYS>> <</SYS>>; bracket forms [INST] [/INST] [SYSTEM_PROMPT]
#   [TOOL_CALLS] [gMASK].
CONTROL_TOKEN_RE = re.compile(
    r"<[|\uff5c][^<>\n]{0,64}?[|\uff5c]>"  # <|...|> and <｜...｜>
    r"|<</?SYS>>"
    r"|</?[A-Za-z_][A-Za-z0-9_.:\-]{0,48}>"  # <s>, </s>, <start_of_turn>, <extra_id_0>
    r"|\[/?[A-Za-z_][A-Za-z0-9_]{0,48}\]"  # [INST], [/INST], [SYSTEM_PROMPT], [gMASK]
)
# Look-alikes without a Unicode compatibility decomposition, so NFKC-normalising tokenizers
# (some HF tokenizers normalise before matching added tokens) cannot fold them back to ASCII.
# U+2039/U+203A single angle quotation marks; U+2045/U+2046 square brackets with quill.
_LOOKALIKES = str.maketrans({"<": "\u2039", ">": "\u203a", "[": "\u2045", "]": "\u2046"})


def neutralise_control_tokens(text: str) -> str:
    """`text` with every control-token-shaped string given look-alike delimiters.

    `<|im_start|>` becomes `‹|im_start|›`, `[INST]` becomes `⁅INST⁆`, `</s>` becomes `‹/s›`: still
    readable, never a control token. Text without such strings is returned unchanged.
    """
    if "<" not in text and "[" not in text:
        return text
    return CONTROL_TOKEN_RE.sub(lambda m: m.group(0).translate(_LOOKALIKES), text)


def neutralise_messages(messages: Sequence[Message]) -> list[Message]:
    """Copies of `messages` with every content neutralised (roles unchanged)."""
    return [{**m, "content": neutralise_control_tokens(m["content"])} for m in messages]


@dataclass(frozen=True, slots=True)
class PromptPiece:
    """A run of prompt text: the template's own (`is_content` False: tokenize with special
    tokens parsed) or a message's content (True: tokenize as plain text)."""

    text: str
    is_content: bool


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """A chat prompt split into template and content pieces, plus the formatter's extras.

    Attributes:
        verbatim: joining the pieces reproduces the template's own rendering of the messages
            (False when the template transforms contents beyond trimming, e.g. splitting a
            reasoning block: contents are then placed as written).
    """

    pieces: tuple[PromptPiece, ...]
    stop: list[str]
    stopping_criteria: Any
    added_special: bool
    verbatim: bool

    @property
    def text(self) -> str:
        """The whole prompt as one string (for logs of lengths and for tests)."""
        return "".join(piece.text for piece in self.pieces)


def render_prompt(formatter: Callable[..., Any], messages: Sequence[Message]) -> RenderedPrompt:
    """Render `messages` with a llama-cpp-python chat formatter, contents kept apart.

    Each content is replaced by a random sentinel, the template is rendered and split at the
    sentinels, and the contents are put back as separate pieces. Contents never pass through the
    template's text, so a content cannot fuse with template text into a control token. When the
    template trims contents (Llama 3, Gemma), the trimmed contents are used, as the template would.

    Args:
        formatter: a `llama_chat_format.ChatFormatter` (e.g. `Jinja2ChatFormatter` or
            `format_llama2`): called as `formatter(messages=...)`, returns an object with
            `prompt`, `stop`, `stopping_criteria` and `added_special`.
    """
    nonce = secrets.token_hex(8)
    marks = [f"@@solace-content-{nonce}-{index}@@" for index in range(len(messages))]
    shaped = formatter(
        messages=[{**m, "content": mark} for m, mark in zip(messages, marks, strict=True)]
    )
    parts = re.split(f"@@solace-content-{nonce}-(\\d+)@@", shaped.prompt)
    raw = [m["content"] for m in messages]
    contents, verbatim = _matching_contents(formatter, messages, parts, raw)
    pieces: list[PromptPiece] = []
    for position, part in enumerate(parts):
        text = contents[int(part)] if position % 2 else part
        if text:
            pieces.append(PromptPiece(text, is_content=bool(position % 2)))
    stop = shaped.stop if isinstance(shaped.stop, list) else [shaped.stop]
    return RenderedPrompt(
        pieces=tuple(pieces),
        stop=[s for s in stop if s],  # an empty stop string would end every reply at once
        stopping_criteria=shaped.stopping_criteria,
        added_special=bool(shaped.added_special),
        verbatim=verbatim,
    )


def tokenize_pieces(rendered: RenderedPrompt, tokenize: Callable[..., list[int]]) -> list[int]:
    """`rendered`'s token ids: the template's text with special tokens parsed, every content as
    plain text. `tokenize` is llama-cpp-python's `Llama.tokenize(text, add_bos=, special=)`."""
    tokens: list[int] = []
    for index, piece in enumerate(rendered.pieces):
        tokens += tokenize(
            piece.text.encode("utf-8"),
            add_bos=index == 0 and not rendered.added_special,
            special=not piece.is_content,  # only the template may emit control tokens
        )
    return tokens


def _matching_contents(
    formatter: Callable[..., Any],
    messages: Sequence[Message],
    parts: list[str],
    raw: list[str],
) -> tuple[list[str], bool]:
    """The contents to put back (raw, or trimmed if the template trims) and whether the result
    equals the template's own rendering."""
    try:
        expected = formatter(messages=list(messages)).prompt
    except Exception:  # a template that rejects real contents still rendered the sentinels
        expected = None
    for contents in (raw, [c.strip() for c in raw]):
        joined = "".join(contents[int(p)] if i % 2 else p for i, p in enumerate(parts))
        if joined == expected:
            return contents, True
    logger.debug("chat template transforms message contents; contents are placed as written")
    return raw, False
