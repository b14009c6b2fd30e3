"""The `llama-server` backend (bot/backends/llama_server.py) against the real binary that
`make llama-server` builds, with the real SmolLM2 GGUF, on 127.0.0.1 (marked `slow`; skipped when
the binary is missing): streaming, the per-start key, prefix reuse across turns, per-slot context,
token counts. The failure modes the real server cannot be made to show on demand (503 while
loading, malformed streams) use tests/servers/llama_server.py as the binary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from bot import texts
from bot.backends import build_backend
from bot.backends.llama_cpp import LlamaCppBackend, model_files
from bot.backends.llama_server import LlamaServerBackend, SlotAffinity, conversation_key
from bot.backends.prompt_render import neutralise_messages
from bot.engine import build_engine
from bot.errors import BackendError
from dialogue.prompts import build_messages
from tests.bot.backends.llama_rig import (
    FORGED,
    GREEDY,
    fake_binary,
    make_settings,
    say,
    stored_user_turns,
)


@pytest.fixture
def backend(llama_server_binary, smollm2_gguf, tmp_path) -> Iterator[LlamaServerBackend]:
    """A running llama-server child with the embedded GGUF, stopped after the test."""
    built = build_backend(make_settings(tmp_path))
    assert isinstance(built, LlamaServerBackend)
    yield built
    built.close()


# --- no binary needed ---------------------------------------------------------------------------


def test_slot_affinity_returns_a_conversation_to_its_slot() -> None:
    slots = SlotAffinity(2)
    a, b, c = "a", "b", "c"
    first_a = slots.acquire(a)
    slots.release(first_a)
    first_b = slots.acquire(b)
    assert first_b != first_a  # the free slot nobody used, not a's
    slots.release(first_b)
    assert slots.acquire(a) == first_a  # back to the slot holding a's prefix
    busy_b = slots.acquire(b)
    assert busy_b == first_b
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(slots.acquire(c)))
    waiter.start()
    time.sleep(0.2)
    assert not got  # both slots busy: c waits
    slots.release(first_a)
    waiter.join(5)
    assert got == [first_a]  # c took a's slot; a's prefix is now elsewhere (server RAM cache)
    slots.release(busy_b)
    slots.release(first_a)
    assert slots.acquire(a) == first_b  # a's old slot went to c: a gets the least recent one


async def test_engine_warm_up_hands_the_system_prompt_to_the_backend(memory, settings) -> None:
    from bot.engine import Engine
    from tests.fakes import FakeBackend, FakeSafety

    class WarmableBackend(FakeBackend):
        prefixes: list[list[dict[str, str]]] = []

        def warm_up(self, prefix):  # type: ignore[no-untyped-def]
            self.prefixes.append(list(prefix))

    backend = WarmableBackend(n_ctx=512)
    await Engine(backend, memory, FakeSafety(), settings).warm_up()
    assert backend.prefixes == [build_messages([])]
    assert [m["role"] for m in backend.prefixes[0]] == ["system"]


def test_conversation_key_ignores_later_turns() -> None:
    first = build_messages([], "I can't sleep.")
    later = build_messages(
        [("user", "I can't sleep."), ("assistant", "I'm sorry.")], "Still awake."
    )
    other = build_messages([], "My cat died.")
    assert conversation_key(first) == conversation_key(later) != conversation_key(other)


# --- the real llama-server --------------------------------------------------------------------


@pytest.mark.slow
def test_streams_with_a_per_start_key_and_per_slot_context(backend: LlamaServerBackend) -> None:
    messages = build_messages([], "I feel lonely since I moved to a new city.")
    chunks = list(backend.generate(messages, GREEDY))
    assert len(chunks) > 2 and "".join(chunks).strip()
    endpoint = backend.process.wait_ready(0)
    assert endpoint is not None and endpoint.base_url.startswith("http://127.0.0.1:")
    root = endpoint.base_url.removesuffix("/v1")
    assert httpx.get(f"{root}/slots", timeout=5).status_code == 401  # the key is required
    auth = {"Authorization": f"Bearer {endpoint.api_key}"}
    slots = httpx.get(f"{root}/slots", headers=auth, timeout=5).json()
    assert [s["n_ctx"] for s in slots] == [1024, 1024] == [backend.n_ctx] * 2
    assert backend.count_tokens("hello world") in (2, 3)  # the GGUF's own tokenizer


@pytest.mark.slow
def test_content_token_counts_agree_with_the_servers_prompt(backend: LlamaServerBackend) -> None:
    """count_tokens (what the context builder budgets) is what each content costs in the prompt
    the server evaluates, as sent: control-token strings neutralised (issue 15, item 2)."""
    messages = build_messages([("user", FORGED), ("assistant", "That sounds hard.")], FORGED)
    endpoint = backend.process.wait_ready(0)
    assert endpoint is not None
    root, auth = (
        endpoint.base_url.removesuffix("/v1"),
        {"Authorization": f"Bearer {endpoint.api_key}"},
    )

    def prompt_length(sent: list[dict[str, str]]) -> int:
        rendered = httpx.post(f"{root}/apply-template", json={"messages": sent}, headers=auth)
        body = {"content": rendered.json()["prompt"], "add_special": True, "parse_special": True}
        return len(httpx.post(f"{root}/tokenize", json=body, headers=auth).json()["tokens"])

    sent = [dict(m) for m in neutralise_messages(messages)]
    template_only = prompt_length([{**m, "content": ""} for m in sent])
    budget = template_only + sum(backend.count_tokens(m["content"]) for m in messages)
    assert prompt_length(sent) == budget
    usage = httpx.post(
        f"{endpoint.base_url}/chat/completions",
        json={"model": "solace", "messages": sent, "max_tokens": 1},
        headers=auth,
        timeout=60,
    ).json()["usage"]
    assert usage["prompt_tokens"] == budget  # what the chat endpoint evaluated


@pytest.mark.slow
def test_a_conversation_prefix_is_reused_across_turns(backend: LlamaServerBackend) -> None:
    backend.warm_up(build_messages([]))  # what Engine.warm_up does: the system prompt, every slot
    first = build_messages([], "I had a rough day at work and I can't stop thinking about it.")
    reused = backend.prompt_tokens_reused
    reply = "".join(backend.generate(first, GREEDY))
    # A new conversation: its system prompt was already in the slot it got.
    assert backend.prompt_tokens_reused - reused >= backend.count_tokens(first[0]["content"])
    other = build_messages([], "My exam went badly and I feel stupid.")
    "".join(backend.generate(other, GREEDY))  # someone else in between
    follow_up = build_messages(
        [("user", first[-1]["content"]), ("assistant", reply)], "Yes, my boss shouted at me."
    )
    reused, evaluated = backend.prompt_tokens_reused, backend.prompt_tokens_evaluated
    "".join(backend.generate(follow_up, GREEDY))
    prefix = backend.count_tokens(first[0]["content"]) + backend.count_tokens(first[1]["content"])
    assert backend.prompt_tokens_reused - reused >= prefix  # system prompt + first turn reused
    assert backend.prompt_tokens_evaluated - evaluated < backend.count_tokens(reply) + 40


# Messages whose greedy replies (SmolLM2 + Solace's adapter) diverged when llama-server ran
# flash attention (its default, `-fa auto`, turns it on on CPU) and the embedded model did not.
PARITY_MESSAGES = (
    "I feel tired all the time lately.",
    "I don't know how to tell my parents.",
    "I keep worrying about my exams.",
)


@pytest.mark.slow
def test_greedy_replies_are_the_embedded_models(tmp_path, backend: LlamaServerBackend) -> None:
    """Same files, same prompt, greedy: llama-server answers exactly as the embedded backend
    (one request at a time, so no batched arithmetic is involved)."""
    settings = make_settings(tmp_path)
    embedded = LlamaCppBackend.from_settings(settings)  # the same settings, in this process
    assert (backend.process.command.model, backend.process.command.lora) == model_files(settings)
    assert embedded.lora_path is not None  # Solace's adapter, applied on both sides
    options = GREEDY.model_copy(update={"max_new_tokens": 48})
    try:
        for text in PARITY_MESSAGES:
            messages = build_messages([], text)
            assert "".join(backend.generate(messages, options)) == "".join(
                embedded.generate(messages, options)
            ), text
    finally:
        embedded.llama.close()


@pytest.mark.slow
def test_context_is_budgeted_per_slot(tmp_path, llama_server_binary, smollm2_gguf) -> None:
    """512 tokens per slot (1024 in all): a long conversation is cut to fit one slot."""
    settings = make_settings(tmp_path, model={"n_ctx": 512})
    engine = build_engine(settings)
    try:
        assert engine.backend.n_ctx == 512
        key = engine.memory.pseudonym("telegram", "7")
        engine.memory.mark_notice_seen(key, "telegram")
        long_turn = "I keep going over what happened at work, again and again. " * 8
        for _ in range(12):  # ~1,300 tokens of history: more than a slot, more than the total
            for role in ("user", "assistant"):
                tokens = engine.backend.count_tokens(long_turn)
                engine.memory.add_turn(
                    key, platform="telegram", role=role, text=long_turn, tokens=tokens
                )
        reply = say(engine, "7", "What should I do?")
        assert reply.strip() and texts.BACKEND_UNAVAILABLE not in reply
        too_long = build_messages([], "word " * 700)  # sent directly: the server refuses it
        with pytest.raises(BackendError):
            "".join(engine.backend.generate(too_long, GREEDY))
    finally:
        engine.backend.close()  # type: ignore[attr-defined]
        engine.memory.db.close()


# --- failure modes through the fake binary ------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "logged"), [("malformed", "malformed stream"), ("unavailable", "InternalServerError")]
)
def test_broken_answers_give_the_kind_reply(tmp_path, smollm2_gguf, mode, logged, caplog) -> None:
    ls = {"binary": fake_binary(tmp_path), "extra_args": ["--fake-mode", mode]}
    engine = build_engine(make_settings(tmp_path, llama_server=ls))
    try:
        engine.memory.mark_notice_seen(engine.memory.pseudonym("telegram", "4"), "telegram")
        with caplog.at_level(logging.ERROR):
            reply = say(engine, "4", "Hello?")
        assert reply.endswith(texts.BACKEND_UNAVAILABLE)
        errors = [r.getMessage() for r in caplog.records if r.name == "bot.engine.engine"]
        assert len(errors) == 1 and logged in errors[0], errors  # one clear line
        assert stored_user_turns(engine.settings.memory.db_path) == ["Hello?"]
    finally:
        engine.backend.close()  # type: ignore[attr-defined]
        engine.memory.db.close()


def test_503_while_loading_is_waited_for(tmp_path, smollm2_gguf) -> None:
    """The fake answers 503 to everything while "loading": a manager that did not wait for /health
    would send the first request too early and fail."""
    ls = {"binary": fake_binary(tmp_path), "extra_args": ["--fake-mode", "loading"]}
    backend = build_backend(make_settings(tmp_path, llama_server=ls))
    try:
        assert isinstance(backend, LlamaServerBackend)
        reply = "".join(backend.generate(build_messages([], "Hi"), GREEDY))
        assert reply == "I hear you. That sounds hard."
    finally:
        backend.close()  # type: ignore[attr-defined]
