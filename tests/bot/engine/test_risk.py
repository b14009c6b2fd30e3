"""Issue 17 through the engine: the concern check-in, a "yes" to it, and the per-person risk state.

Engine unit tests (fake backend, FakeSafety with a concern word); the same exchange through the
real SafetyLayer rules and both adapters is in tests/bot/adapters/test_checkin.py.
"""

from __future__ import annotations

import pytest

from bot.engine import Engine
from bot.engine.risk import CHECKIN_ANSWER_SECONDS
from bot.errors import StorageError
from bot.messages import IncomingMessage
from bot.safety.context import RISK_HALF_LIFE_SECONDS


class Clock:
    """A settable clock for the engine and memory."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def risk_engine(fake_backend, memory, fake_safety, settings, clock) -> Engine:
    fake_safety.concern_words = {"no point": "suicide", "he checks my phone": "abuse"}
    memory._clock = clock
    return Engine(fake_backend, memory, fake_safety, settings, clock=clock)


async def say(engine: Engine, text: str, user: str = "u1", chat: str | None = None) -> str:
    msg = IncomingMessage("telegram" if chat else "console", user, text, chat_id=chat)
    return "".join([piece async for piece in engine.respond(msg)])


async def test_concern_reply_is_model_text_then_the_fixed_checkin(
    risk_engine, fake_backend, memory
):
    await say(risk_engine, "hello")
    fake_backend.enqueue(["That sounds ", "really heavy."])
    reply = await say(risk_engine, "there is no point to anything")
    assert reply.startswith("That sounds really heavy.\n\n")
    assert reply.endswith("CHECKIN[suicide] Are you thinking of ending your life?")
    key = memory.pseudonym("console", "u1")
    stored = [t["text"] for c in memory.export_user(key)["conversations"] for t in c["turns"]]
    assert stored[-1].startswith("CHECKIN[suicide]")  # what the person saw is what is stored
    assert memory.stats()["events_concern"] == 1


async def test_yes_to_the_checkin_gets_the_crisis_reply_without_the_model(
    risk_engine, fake_backend, memory
):
    await say(risk_engine, "there is no point to anything")
    calls = len(fake_backend.history)
    reply = await say(risk_engine, "yes, sometimes")
    assert reply.startswith("CRISIS[suicide|None]")
    assert len(fake_backend.history) == calls
    assert memory.stats()["events_crisis"] == 1
    # the check-in has been answered: a later "yes" is an ordinary message
    after = await say(risk_engine, "yes I had breakfast")
    assert not after.startswith("CRISIS")


async def test_no_to_the_checkin_continues_with_the_model(risk_engine, fake_backend):
    await say(risk_engine, "he checks my phone every night")
    fake_backend.enqueue(["Thank you for telling me."])
    reply = await say(risk_engine, "no, I'm safe, just tired")
    assert reply == "Thank you for telling me."


async def test_risk_state_raises_decays_and_is_passed_to_the_screen(
    risk_engine, fake_safety, memory, clock
):
    await say(risk_engine, "hello")
    assert fake_safety.contexts[-1] == ((), False)
    await say(risk_engine, "there is no point to anything")
    assert memory.stats()["events_risk_raised"] == 1
    clock.now += 60
    await say(risk_engine, "thanks")
    context, raised = fake_safety.contexts[-1]
    assert raised and context == ("hello", "there is no point to anything")
    clock.now += 3 * RISK_HALF_LIFE_SECONDS
    await say(risk_engine, "morning")
    assert fake_safety.contexts[-1][1] is False  # decayed below the raise level
    assert memory.stats()["events_risk_raised"] == 1


async def test_a_message_that_got_the_crisis_reply_is_not_joined_again(
    risk_engine, fake_safety, fake_backend
):
    """Otherwise every later message would be screened with it and get the crisis reply too."""
    await say(risk_engine, "hello")
    assert (await say(risk_engine, "I want to end it all")).startswith("CRISIS")
    fake_backend.enqueue(["I'm here."])
    assert await say(risk_engine, "I don't want to call anyone") == "I'm here."
    context, raised = fake_safety.contexts[-1]
    assert raised and context == ("hello",)  # the lower thresholds instead


async def scoped(engine: Engine, text: str, chat: str | None) -> str:
    """One person (telegram user 7) in their private chat (chat None) or a group."""
    msg = IncomingMessage("telegram", "7", text, chat_id=chat)
    return "".join([piece async for piece in engine.respond(msg)])


async def test_risk_is_per_person_but_a_group_screen_never_reads_private_text(
    risk_engine, fake_safety
):
    await scoped(risk_engine, "private words about my week", None)
    await scoped(risk_engine, "there is no point to anything", None)
    await scoped(risk_engine, "hi everyone", "-100")
    context, raised = fake_safety.contexts[-1]
    assert raised  # the score (a number) crosses chats: lower thresholds in the group too
    assert context == ()  # the text does not: the group's screen sees only the group's turns
    await scoped(risk_engine, "how was the match", "-100")
    assert fake_safety.contexts[-1][0] == ("hi everyone",)
    await scoped(risk_engine, "back here", None)
    assert "private words about my week" in fake_safety.contexts[-1][0]


async def test_a_checkin_is_answered_only_where_it_was_asked(risk_engine, fake_backend, clock):
    reply = await scoped(risk_engine, "there is no point to anything", None)
    assert "CHECKIN[suicide]" in reply
    clock.now += 30
    group = await scoped(risk_engine, "yes, see you all at eight", "-100")
    assert not group.startswith("CRISIS")  # a "yes" in a group answers something else
    clock.now += 30
    private = await scoped(risk_engine, "yes", None)
    assert private.startswith("CRISIS[suicide|None]")


async def test_a_checkin_lapses_after_a_while(risk_engine, clock):
    await say(risk_engine, "there is no point to anything")
    clock.now += CHECKIN_ANSWER_SECONDS + 60
    assert not (await say(risk_engine, "yes I finally slept")).startswith("CRISIS")


async def test_no_checkin_after_a_worry_about_someone_else(risk_engine, fake_safety, fake_backend):
    from tests.fakes import FakeScreen

    async def about_a_friend(text, context=(), *, raised=False):
        return FakeScreen(False, "suicide", "concern", "x", subject="other")

    await say(risk_engine, "hello")  # past the privacy notice
    fake_safety.screen = about_a_friend
    fake_backend.enqueue(["That must be worrying."])
    assert await say(risk_engine, "my friend tried to end her life years ago") == (
        "That must be worrying."
    )


async def test_risk_bookkeeping_failure_never_stops_a_crisis_reply(risk_engine, memory, caplog):
    def broken(*args, **kwargs):
        raise StorageError("the database is busy")

    memory.get_risk = broken
    memory.set_risk = broken
    reply = await say(risk_engine, "I want to end it all")
    assert reply.startswith("CRISIS[suicide|None]")
    assert any("risk state" in r.getMessage() for r in caplog.records)
    assert not any("end it all" in r.getMessage() for r in caplog.records)


async def test_risk_state_is_exported_and_forgotten(risk_engine, memory):
    await say(risk_engine, "there is no point to anything")
    key = memory.pseudonym("console", "u1")
    exported = memory.export_user(key)["risk_state"]
    assert exported["raised"] is True and exported["score"] == pytest.approx(1.0)
    assert exported["checkin_waiting"] == "suicide"
    await risk_engine.forget("console", "u1")
    assert memory.get_risk(key) is None
    assert memory.export_user(key)["risk_state"] is None
