"""The self-chat template: the 16 strategies with definitions and examples, one seed dialogue as
the format example, the scenario, writing instructions and the JSON shape to return.

It carries what the ExTES paper's template carries, in this project's own words. The template's
text, the strategy examples and the JSON schema are hashed (`template_hash`) into the manifest,
so a data set names exactly the template that made it. docs/data.md prints it in full.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dialogue.strategies import EXTES_STRATEGIES
from dialogue.types import Dialogue
from synthesis.records import dialogue_record
from synthesis.scenarios import Scenario

TEMPLATE_VERSION = "solace-extes-selfchat-1"

# One example utterance per strategy (this project's own), shown next to its definition.
STRATEGY_EXAMPLES: dict[str, str] = {
    "Reflective Statements": "So since the move you have mostly been spending evenings alone.",
    "Clarification": "When you say things fell apart at work, what happened exactly?",
    "Emotional Validation": "It makes sense that you feel hurt; anyone would after that.",
    "Empathetic Statements": "I can hear how exhausting these weeks have been for you.",
    "Affirmation": "Reaching out about this took courage, and you did it.",
    "Offer Hope": "Many people find that the worst of this eases with time and support.",
    "Avoid Judgment and Criticism": "There is no wrong way to feel about this; you are not to blame.",
    "Suggest Options": "Would it help to write down what you want to say before the call?",
    "Collaborative Planning": "Shall we pick one small step for this week and plan when to do it?",
    "Provide Different Perspectives": "Could his silence be about his own stress rather than about you?",
    "Reframe Negative Thoughts": "One rejection does not make you unemployable; it is one company's choice.",
    "Share Information": "Trouble sleeping is a common reaction to grief, especially early on.",
    "Normalize Experiences": "A lot of new parents feel this way, even if few say it out loud.",
    "Promote Self-Care Practices": "Have you been able to eat properly and get some rest lately?",
    "Stress Management": "A slow breath in for four counts and out for six can calm the body.",
    "Others": "Hi, I'm glad you wrote. What would you like to talk about today?",
}

SYSTEM_TEXT = (
    "You write realistic example conversations for training an emotional-support assistant. "
    "Each conversation is between a person who is going through something hard (the User) and a "
    "warm, attentive supporter (the AI). The AI is an AI: it never claims to be human, a "
    "therapist, a doctor or any other professional. It never describes ways, means or amounts "
    "by which someone could hurt themselves or others. When someone might be in danger, it "
    "encourages them to contact local emergency services or a crisis line. You answer with one "
    "JSON object and nothing else."
)

USER_TEMPLATE = """Write one new emotional-support conversation for the scenario below.

## Scenario
{scene}
An example of a situation in this scenario (invent your own, do not reuse it): {scene_example}

## Support strategies
For each of its turns the AI uses one strategy from this list, named exactly as written:
{strategies}

## Example of the format
Here is a conversation from another scenario. Follow its format, not its content, names or wording:
{seed}

## What to write
- "scene": exactly "{scene}".
- "description": two to four sentences in the first person, from the User's point of view, about a specific and realistic situation in this scenario: who is involved, what happened, when, and how it feels.
- "content": a natural conversation of {min_turns} to {max_turns} turns (about {typical_turns} is typical), strictly alternating, starting with the User. The User opens up gradually, as people do; the AI listens before it advises, asks before it assumes, and chooses the strategy that fits each moment, using several different ones over the conversation. Each turn is one to four sentences. The conversation ends naturally once the User feels somewhat better.
- Every AI turn has an "AI Strategy" naming one of the strategies above.
- Do not copy sentences from the example conversation.

## Answer
Return only this JSON object, without code fences or any other text:
{shape}"""

SHAPE = (
    '{"scene": "...", "description": "...", "content": [{"User": "..."}, '
    '{"AI Strategy": "...", "AI": "..."}, {"User": "..."}, ...]}'
)

RETRY_NOTE = (
    "\n\nNote: a previous answer to this request could not be used ({reason}). Return one "
    "complete JSON object in the shape above and nothing else."
)
TYPICAL_TURNS = 18  # ExTES averages 18.2 utterances per dialogue


def response_schema(strategies: list[str]) -> dict[str, Any]:
    """The JSON schema of an answer (OpenAI strict structured output; llama.cpp grammars)."""
    user_turn = {
        "type": "object",
        "additionalProperties": False,
        "required": ["User"],
        "properties": {"User": {"type": "string"}},
    }
    ai_turn = {
        "type": "object",
        "additionalProperties": False,
        "required": ["AI Strategy", "AI"],
        "properties": {
            "AI Strategy": {"type": "string", "enum": strategies},
            "AI": {"type": "string"},
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["scene", "description", "content"],
        "properties": {
            "scene": {"type": "string"},
            "description": {"type": "string"},
            "content": {"type": "array", "items": {"anyOf": [user_turn, ai_turn]}},
        },
    }


def strategy_lines(strategies: dict[str, str] = EXTES_STRATEGIES) -> str:
    """The numbered strategy list with definitions and example utterances."""
    lines = []
    for number, (name, definition) in enumerate(strategies.items(), start=1):
        example = STRATEGY_EXAMPLES.get(name)
        suffix = f' Example: "{example}"' if example else ""
        lines.append(f"{number}. {name}: {definition}{suffix}")
    return "\n".join(lines)


def build_messages(
    scenario: Scenario, seed: Dialogue, min_turns: int, max_turns: int, retry_reason: str | None
) -> list[dict[str, str]]:
    """The chat messages for one request: system text, then the filled-in template."""
    typical = min(max(TYPICAL_TURNS, min_turns), max_turns)
    user = USER_TEMPLATE.format(
        scene=scenario.name,
        scene_example=scenario.description,
        strategies=strategy_lines(),
        seed=json.dumps(dialogue_record(seed), ensure_ascii=False, indent=1),
        min_turns=min_turns,
        max_turns=max_turns,
        typical_turns=typical,
        shape=SHAPE,
    )
    if retry_reason:
        user += RETRY_NOTE.format(reason=retry_reason)
    return [{"role": "system", "content": SYSTEM_TEXT}, {"role": "user", "content": user}]


def template_hash() -> str:
    """sha256 over everything the template is made of (text, examples, definitions, schema)."""
    parts = {
        "version": TEMPLATE_VERSION,
        "system": SYSTEM_TEXT,
        "user": USER_TEMPLATE,
        "shape": SHAPE,
        "retry": RETRY_NOTE,
        "strategies": strategy_lines(),
        "schema": response_schema(list(EXTES_STRATEGIES)),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
