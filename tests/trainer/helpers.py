"""Builders for trainer tests: a WordLevel tokenizer with a ChatML template, a tiny random Llama
saved as a Hugging Face directory, and hand-written dialogues. Nothing is downloaded."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from dialogue.types import Dialogue, Turn

SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
WORDS = [
    "system",
    "user",
    "assistant",
    "i",
    "you",
    "the",
    "a",
    "to",
    "and",
    "of",
    "it",
    "is",
    "was",
    "my",
    "me",
    "feel",
    "sad",
    "tired",
    "work",
    "friend",
    "sleep",
    "hard",
    "today",
    "so",
    "very",
    "not",
    "sure",
    "why",
    "what",
    "how",
    "do",
    "can",
    "that",
    "sounds",
    "really",
    "tough",
    "have",
    "been",
    "alone",
    "lonely",
    "talk",
    "help",
    "try",
    "maybe",
    "walk",
    "rest",
    "tell",
    "more",
    "about",
    "thank",
    "thanks",
    "ok",
    "yes",
    "no",
    "[",
    "]",
    "question",
    "others",
    "am",
    "some",
    "for",
    "your",
    "with",
    ".",
    ",",
    "?",
    "!",
]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
USER_LINES = [
    "i feel sad and tired today",
    "work was very hard",
    "my friend is not talking to me",
    "i can not sleep",
    "i have been alone and lonely",
    "what do i do",
]
ASSISTANT_LINES = [
    "that sounds really tough .",
    "can you tell me more about it ?",
    "maybe a walk and some rest can help .",
    "i am sure it was hard for you .",
    "how do you feel about the talk with your friend ?",
]


def make_tokenizer() -> Any:
    """A fast WordLevel tokenizer over WORDS with ChatML special tokens and template."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + [w for w in WORDS if w not in SPECIALS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = CHATML
    return tok


def make_dialogues(n: int, exchanges: int = 4, seed: int = 0) -> list[Dialogue]:
    """n deterministic dialogues of user/assistant exchanges with ESConv-style strategies."""
    rng = random.Random(seed)
    dialogues = []
    for d in range(n):
        turns = []
        for _ in range(exchanges):
            turns.append(Turn("user", rng.choice(USER_LINES)))
            turns.append(Turn("assistant", rng.choice(ASSISTANT_LINES), "Question"))
        dialogues.append(Dialogue(f"test:{d}", "test", "scene", None, tuple(turns)))
    return dialogues


def write_esconv_file(path: Path, dialogues: list[Dialogue]) -> Path:
    """The dialogues as an ESConv JSON array (the format dialogue.datasets.load_path reads)."""
    records = []
    for d in dialogues:
        dialog = [
            {"text": t.text, "speaker": "usr"}
            if t.role == "user"
            else {"text": t.text, "speaker": "sys", "strategy": t.strategy or "Others"}
            for t in d.turns
        ]
        records.append(
            {
                "experience_type": "Current Experience",
                "emotion_type": "sadness",
                "problem_type": "job crisis",
                "situation": "test",
                "survey_score": {},
                "dialog": dialog,
            }
        )
    path.write_text(json.dumps(records))
    return path


def make_tiny_model_dir(path: Path) -> Path:
    """A 2-layer random Llama (hidden 32) plus the test tokenizer, saved as a HF directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path
