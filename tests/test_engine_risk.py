"""Issue 17 through the engine: the concern check-in, a "yes" to it, and the per-person risk state.

Engine unit tests (fake backend, FakeSafety with a concern word); the same exchange through the
real SafetyLayer rules and both adapters is in tests/test_checkin_adapters.py.
"""

from __future__ import annotations

import pytest

from bot.engine import Engine
from bot.safety_context import RISK_HALF_LIFE_SECONDS
from bot.types import IncomingMessage


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


async def say(engine: Engine, text: str, user: str = "u1") -> str:
    msg = IncomingMessage("console", user, text)
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


async def test_risk_state_is_exported_and_forgotten(risk_engine, memory):
    await say(risk_engine, "there is no point to anything")
    key = memory.pseudonym("console", "u1")
    exported = memory.export_user(key)["risk_state"]
    assert exported["raised"] is True and exported["score"] == pytest.approx(1.0)
    assert exported["checkin_waiting"] == "suicide"
    await risk_engine.forget("console", "u1")
    assert memory.get_risk(key) is None
    assert memory.export_user(key)["risk_state"] is None
