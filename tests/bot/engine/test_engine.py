"""Engine tests with the fake backend and fake safety layer over a real temp SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from bot import texts
from bot.engine import Engine
from bot.errors import BackendError
from bot.messages import IncomingMessage
from tests.fakes import FakeBackend, command_text


def msg(text: str, user: str = "u1", platform: str = "console") -> IncomingMessage:
    return IncomingMessage(platform, user, text)


async def say(engine: Engine, text: str, user: str = "u1") -> str:
    return "".join([piece async for piece in engine.respond(msg(text, user))])


def turns_of(engine: Engine, user: str = "u1") -> list[tuple[str, str, bool]]:
    key = engine.memory.pseudonym("console", user)
    export = engine.memory.export_user(key)
    return [
        (t["role"], t["text"], t["flagged"]) for c in export["conversations"] for t in c["turns"]
    ]


async def test_first_contact_shows_notice_then_replies(engine, fake_backend):
    fake_backend.enqueue(["It sounds ", "like a hard day."])
    reply = await say(engine, "hello")
    assert reply.startswith(engine.privacy_text())
    assert "/forget" in reply and "not a therapist" in reply
    assert reply.endswith("It sounds like a hard day.")
    second = await say(engine, "still here")
    assert engine.privacy_text() not in second
    assert turns_of(engine) == [
        ("user", "hello", False),
        ("assistant", "It sounds like a hard day.", False),
        ("user", "still here", False),
        ("assistant", "I hear you. Tell me more.", False),
    ]


async def test_user_turn_is_committed_before_generation(engine, fake_backend, memory):
    seen_during_generation: list[list[str]] = []
    original = fake_backend.generate

    def generate(messages, options):
        key = memory.pseudonym("console", "u1")
        seen_during_generation.append([t.text for t in memory.recent_turns(key, 10)])
        yield from original(messages, options)

    fake_backend.generate = generate
    await say(engine, "first words")
    assert seen_during_generation == [["first words"]]
    messages, options = fake_backend.history[0]
    assert messages[0]["role"] == "system"
    assert messages[-1] == {"role": "user", "content": "first words"}
    assert (options.temperature, options.top_p, options.top_k, options.max_new_tokens) == (
        0.7,
        0.95,
        50,
        128,
    )


async def test_crisis_gets_fixed_reply_without_model_and_conversation_continues(
    engine, fake_backend, fake_safety, memory
):
    await say(engine, "hi")
    calls = len(fake_backend.history)
    reply = await say(engine, "I just want to END IT ALL tonight")
    assert reply.startswith("CRISIS[suicide|None]")
    assert len(fake_backend.history) == calls  # the model was not asked
    assert turns_of(engine)[-2:] == [
        ("user", "I just want to END IT ALL tonight", True),
        ("assistant", reply, True),
    ]
    assert memory.stats()["events_crisis"] == 1
    after = await say(engine, "thank you")
    assert after == "I hear you. Tell me more."
    assert fake_backend.history[-1][0][-1]["content"] == "thank you"


async def test_crisis_on_first_contact_puts_resources_before_notice(engine, fake_backend):
    reply = await say(engine, "i want to end it all")
    assert reply.index("CRISIS") < reply.index(engine.privacy_text())
    assert fake_backend.history == []


async def test_first_contact_crisis_stores_no_words_before_the_notice_is_seen(engine, memory):
    """Reader gone after the resources: a moderator event exists, the person's words do not."""
    stream = engine.respond(msg("i want to end it all"))
    async with contextlib.aclosing(stream):
        first = await anext(stream)
    assert first.startswith("CRISIS[suicide")
    assert memory.stats()["events_crisis"] == 1
    assert turns_of(engine) == []
    # Once the notice has been delivered, the conversation is stored as usual.
    await say(engine, "i want to end it all")
    assert [role for role, _, _ in turns_of(engine)] == ["user", "assistant"]


async def test_crisis_uses_the_users_country(engine):
    await say(engine, "hello")
    assert await engine.set_country("console", "u1", "gb") == texts.COUNTRY_SET.format(country="GB")
    assert (await say(engine, "end it all")).startswith("CRISIS[suicide|GB]")
    assert await engine.set_country("console", "u1", "Britain") == texts.COUNTRY_INVALID


async def test_guard_failure_stops_generation_and_sends_fallback(
    engine, fake_backend, memory, settings
):
    await say(engine, "hi")
    safe = "This part is fine and long enough to pass the hold-back window easily. "
    fake_backend.enqueue([safe, "then FORB", "IDDEN words", " and more", " and more"])
    pieces = [p async for p in engine.respond(msg("tell me"))]
    reply = "".join(pieces)
    assert "FORBIDDEN" not in reply and "FORB" not in reply
    assert reply.endswith("FALLBACK: I'm here with you.")
    assert reply.startswith("This part is fine")
    assert memory.stats()["events_guard"] == 1
    role, stored, flagged = turns_of(engine)[-1]
    assert (role, flagged) == ("assistant", True) and "FORB" not in stored


async def test_released_text_has_always_been_guarded(engine, fake_backend, fake_safety):
    await say(engine, "hi")
    words = [f"word{i} " for i in range(60)]
    fake_backend.enqueue(words)
    released = ""
    async for piece in engine.respond(msg("go on")):
        released += piece
        checked = [text for text, _ in fake_safety.guarded]
        assert any(text.startswith(released) and len(text) >= len(released) for text in checked)
    assert released == "".join(words).strip() or released == "".join(words)
    assert fake_safety.guarded[-1][1] is True  # a final check ran


async def test_backend_failure_keeps_user_turn_and_answers_kindly(engine, fake_backend, memory):
    await say(engine, "hi")
    fake_backend.enqueue([BackendError("server down")])
    reply = await say(engine, "are you there?")
    assert reply == texts.BACKEND_UNAVAILABLE
    assert turns_of(engine)[-1] == ("user", "are you there?", False)
    assert memory.stats()["events_backend_error"] == 1
    assert await say(engine, "again") == "I hear you. Tell me more."


async def test_cancel_mid_reply_keeps_user_turn_and_what_was_shown(engine, fake_backend):
    await say(engine, "hi")
    fake_backend.enqueue([f"w{i} " for i in range(40)])
    shown = asyncio.Event()

    async def consume() -> None:
        # As adapters should: aclosing() runs the engine's clean-up at once on cancellation.
        async with contextlib.aclosing(engine.respond(msg("please listen"))) as stream:
            async for _piece in stream:
                shown.set()
                await asyncio.sleep(30)  # the adapter is stuck when the process goes down

    task = asyncio.create_task(consume())
    await asyncio.wait_for(shown.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = turns_of(engine)
    assert stored[-2] == ("user", "please listen", False)
    assert stored[-1][0] == "assistant" and stored[-1][1].startswith("w0")


async def test_cancel_before_any_reply_keeps_user_turn(engine, fake_backend):
    await say(engine, "hi")
    fake_backend.gate = threading.Event()
    fake_backend.enqueue(["never shown"])
    task = asyncio.create_task(say(engine, "are you listening"))
    await asyncio.to_thread(fake_backend.started.wait, 5)
    task.cancel()
    fake_backend.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert turns_of(engine)[-1] == ("user", "are you listening", False)


async def test_single_flight_per_user_and_users_independent(memory, fake_safety, settings):
    backend = FakeBackend(n_ctx=512, parallel=True)
    engine = Engine(backend, memory, fake_safety, settings)
    for user in ("a", "b"):
        await say(engine, "hi", user)
    backend.gate = threading.Event()
    backend.enqueue(["A one"])
    backend.enqueue(["B one"])
    backend.enqueue(["A two"])
    first_a = asyncio.create_task(say(engine, "a first", "a"))
    await asyncio.to_thread(backend.started.wait, 5)
    second_a = asyncio.create_task(say(engine, "a second", "a"))
    first_b = asyncio.create_task(say(engine, "b first", "b"))
    await asyncio.sleep(0.1)
    assert backend.active == 2  # a's first and b's first run together; a's second waits
    backend.gate.set()
    assert await asyncio.gather(first_a, second_a, first_b) == ["A one", "A two", "B one"]
    assert [t[1] for t in turns_of(engine, "a")[-4:]] == ["a first", "A one", "a second", "A two"]
    prompts = [[m["content"] for m in messages] for messages, _ in backend.history]
    second_prompt = next(p for p in prompts if p[-1] == "a second")
    assert second_prompt[-3:] == ["a first", "A one", "a second"]  # saw a's whole first turn


async def test_local_backend_serialises_generation(engine, fake_backend):
    for user in ("a", "b", "c"):
        await say(engine, "hi", user)
    await asyncio.gather(*(say(engine, f"msg {u}", u) for u in ("a", "b", "c")))
    assert fake_backend.max_active == 1


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01\x02", "\n\t "])
async def test_empty_messages_are_answered_not_stored(engine, text):
    assert await say(engine, text) == texts.EMPTY_MESSAGE
    assert turns_of(engine) == []


async def test_control_characters_are_removed_before_storing(engine):
    await say(engine, "hello\x00 there\x1b[31m \ud800friend\r\nbye")
    assert turns_of(engine)[0][1] == "hello there[31m friend\nbye"


async def test_overlong_message_is_stored_truncated_and_not_sent_to_model(engine, fake_backend):
    """#15: a 1 MB line was stored and compressed whole before the length check."""
    await say(engine, "hi")
    calls = len(fake_backend.history)
    huge = "word " * 20_000
    assert await say(engine, huge) == texts.TOO_LONG
    assert len(fake_backend.history) == calls
    stored = turns_of(engine)[-2][1]
    limit = engine.settings.memory.max_message_chars
    assert stored.startswith(huge[:limit].rstrip()) and len(stored) < limit + 100
    assert "more characters were not kept" in stored
    assert await say(engine, "short again") == "I hear you. Tell me more."


async def test_overlong_message_is_compressed_only_after_truncation(tmp_path, fake_backend):
    from bot.config import Settings
    from bot.engine import build_engine

    settings = Settings(
        model={"backend": "echo", "n_ctx": 512},
        memory={"db_path": tmp_path / "c.db", "context_representation": "nostopwords"},
    )
    engine = build_engine(settings, backend=fake_backend, allow_secret_file=True)
    assert (await say(engine, "the " * 300_000 + "end")).endswith(texts.TOO_LONG)
    row = engine.memory.db.execute(
        "SELECT text, compressed FROM turns WHERE role='user'"
    ).fetchone()
    assert len(row[0]) < 4100 and (row[1] is None or len(row[1]) < 4100)
    engine.memory.db.close()


@pytest.mark.parametrize(
    "raw",
    ["\u200b\u200b\u200b", "\u202e\u2066\u200f", "\ufeff \u2060", "\u3164\u2800"],
)
async def test_only_invisible_characters_is_an_empty_message(engine, fake_backend, raw):
    """#15: a message of only zero-width spaces reached the model as non-empty."""
    assert await say(engine, raw) == texts.EMPTY_MESSAGE
    assert fake_backend.history == [] and turns_of(engine) == []


async def test_bidi_and_zero_width_are_not_stored_but_emoji_sequences_are(engine, fake_backend):
    family = "\U0001f469\u200d\U0001f469\u200d\U0001f467"  # one emoji joined by ZWJs
    flag = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
    await say(engine, f"my \u202egnihton\u202c fa\u200bmily {family} {flag} ok")
    user_turns = [t for r, t, _ in turns_of(engine) if r == "user"]
    assert user_turns == [f"my gnihton family {family} {flag} ok"]


async def test_reset_starts_fresh_but_export_keeps_history(engine, fake_backend):
    await say(engine, "before reset")
    assert await engine.reset("console", "u1") == texts.RESET_DONE
    await say(engine, "after reset")
    prompt = [m["content"] for m in fake_backend.history[-1][0]]
    assert "before reset" not in prompt
    export = await engine.export("console", "u1")
    assert len(export["conversations"]) == 2
    assert [c["current"] for c in export["conversations"]] == [False, True]


async def test_forget_erases_and_next_contact_shows_notice_again(engine, memory):
    await say(engine, "remember this")
    assert await engine.forget("console", "u1") == texts.FORGET_DONE
    assert memory.stats()["turns"] == 0 and memory.stats()["users"] == 0
    assert (await say(engine, "hello again")).startswith(engine.privacy_text())


async def test_commands_in_a_private_chat(engine, memory):

    async def command(text: str) -> str | None:
        return await command_text(engine, text, platform="console", user_id="u1")

    await say(engine, "remember this")
    assert await command("just talking") is None
    assert await command("/ 3am thoughts") is None  # a slash and a space: a message
    assert await command("/help") == engine.help_text()
    assert await command("/privacy") == engine.privacy_text()
    assert await command("/start") == engine.welcome_text()
    assert await command("/country us") == texts.COUNTRY_SET.format(country="US")
    assert await command("/nonsense") == texts.UNKNOWN_COMMAND
    assert await command("/forget") != texts.FORGET_DONE  # asks first, erases nothing
    assert memory.stats()["users"] == 1
    assert await command("/forget yes") == texts.FORGET_DONE
    assert memory.stats()["users"] == 0


async def test_hybrid_context_matches_represent_history(
    fake_backend, memory, fake_safety, tmp_path
):
    """Stored KeyPOS forms give the same prompt as dialogue.context.represent_history."""
    from bot.config import Settings
    from dialogue.context import represent_history

    settings = Settings(
        model={"backend": "echo", "n_ctx": 2048},
        memory={
            "db_path": tmp_path / "h.db",
            "context_representation": "hybrid",
            "raw_recent": 2,
            "compress_in_blocks": False,
        },
    )
    engine = Engine(fake_backend, memory, fake_safety, settings)
    lines = [
        "I don't want to go to work tomorrow because my boss shouts at me.",
        "My sister and I had a terrible argument about our parents last night.",
        "I have been sleeping badly for weeks and I feel exhausted all the time.",
    ]
    for line in lines:
        await say(engine, line)
    prompt = [m["content"] for m in fake_backend.history[-1][0][1:-1]]  # without system, current
    stored_texts = [t.text for t in memory.recent_turns(memory.pseudonym("console", "u1"), 10)]
    history = stored_texts[:-2]  # the prompt was built before the last user turn and reply
    assert prompt == represent_history(history, "hybrid", raw_recent=2)
    assert prompt[0] != history[0]  # the oldest turn really is compressed
    stored = memory.recent_turns(memory.pseudonym("console", "u1"), 10)
    assert all(t.representation == "keypos" and t.compressed_tokens for t in stored)


async def test_reply_cut_by_the_token_limit_ends_at_a_sentence(
    fake_backend, memory, fake_safety, settings
):
    """Within the last pieces of the token budget only whole sentences go out, and a reply that
    used it all ends at its last one (three pieces here: the budget is three tokens)."""
    settings = settings.model_copy(
        update={"generation": settings.generation.model_copy(update={"max_new_tokens": 3})}
    )
    engine = Engine(fake_backend, memory, fake_safety, settings)
    await say(engine, "hi")
    fake_backend.enqueue(["That sounds hard. ", "Moving is a big change. ", "I'm here to"])
    assert await say(engine, "I moved") == "That sounds hard. Moving is a big change."
    assert turns_of(engine)[-1][1] == "That sounds hard. Moving is a big change."
