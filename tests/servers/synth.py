"""A scripted OpenAI-compatible chat server on 127.0.0.1 for the synthesis tests.

Each request's scenario is read from the prompt ("## Scenario" line) and answered by the script
for that scenario, by how many requests that scenario has had so far: valid dialogues, code
fences, prose around the JSON, strategy-label variants, truncated JSON, timeouts, 429s with
Retry-After, 500s, duplicates, copies of the example seed, unsafe supporter turns. Every request
is recorded. The dialogue texts are generated here from hand-written word lists.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.paths import FIXTURES

SEEDS = FIXTURES / "synth_seeds.json"
PEOPLE = [
    "my sister",
    "my boss",
    "my roommate",
    "my father",
    "my coach",
    "my neighbour",
    "my partner",
    "my best friend",
    "my teacher",
    "my cousin",
    "my colleague",
    "my aunt",
]
THINGS = [
    "the move",
    "the exam",
    "the interview",
    "the bills",
    "the wedding",
    "the diagnosis",
    "the deadline",
    "the trip",
    "the argument",
    "the new schedule",
    "the lease",
    "the party",
]
TIMES = [
    "on Monday",
    "last night",
    "this morning",
    "two weeks ago",
    "in spring",
    "at lunch",
    "yesterday evening",
    "over the weekend",
    "in January",
    "after class",
    "at dawn",
    "today",
]
FEELINGS = [
    "drained",
    "tense",
    "lonely",
    "restless",
    "ashamed",
    "confused",
    "worried",
    "numb",
    "irritable",
    "uneasy",
    "discouraged",
    "overwhelmed",
]
ACTIONS = [
    "walking by the river",
    "calling an old friend",
    "writing in a notebook",
    "cooking something simple",
    "stretching before bed",
    "listening to music",
    "tidying one drawer",
    "sitting in the garden",
    "reading a few pages",
    "baking bread",
]
USER_LINES = [
    "Since {thing} {time} I have felt {feeling} most of the day.",
    "{person} said something about {thing} and it stuck with me.",
    "Honestly I keep replaying {thing} whenever I try to sleep.",
    "I used to enjoy {action}, but lately I skip it.",
    "It got worse {time}, when {person} brought up {thing} again.",
    "Part of me wants to talk to {person}, part of me wants to hide.",
    "Everything around {thing} makes me feel {feeling} and small.",
    "Maybe you are right; {action} might help a little.",
    "I never told {person} how {feeling} {thing} left me.",
    "My days blur together and {thing} sits on top of all of it.",
    "Thanks, that actually makes me feel a bit lighter about {thing}.",
    "What should I say to {person} when {thing} comes up?",
]
AI_LINES = [
    ("Reflective Statements", "So {thing} has been weighing on you since {time}."),
    ("Clarification", "What part of {thing} feels hardest right now?"),
    ("Emotional Validation", "Feeling {feeling} after {thing} makes complete sense."),
    ("Empathetic Statements", "That sounds exhausting, carrying {thing} every day."),
    ("Affirmation", "Naming how {thing} affects you shows real self-awareness."),
    ("Offer Hope", "Feelings like these around {thing} often soften with time and care."),
    ("Suggest Options", "Would {action} this week give you a short break from {thing}?"),
    ("Collaborative Planning", "Shall we plan one small step about {thing}, maybe {action}?"),
    (
        "Provide Different Perspectives",
        "Could {person} be worried about {thing} too, in their own way?",
    ),
    ("Normalize Experiences", "Many people feel {feeling} after something like {thing}."),
    ("Promote Self-Care Practices", "Have you had time for {action} lately, just for yourself?"),
    ("Stress Management", "When {thing} fills your head, slow breathing for a minute can help."),
]


def valid_dialogue(scene: str, variant: int, turns: int = 12) -> dict[str, Any]:
    """A well-formed ExTES record whose wording depends on (scene, variant)."""
    rng = random.Random(f"{scene}|{variant}")

    def fill(template: str) -> str:
        return template.format(person=rng.choice(PEOPLE), thing=rng.choice(THINGS),
                               time=rng.choice(TIMES), feeling=rng.choice(FEELINGS),
                               action=rng.choice(ACTIONS))  # fmt: skip

    content: list[dict[str, str]] = []
    user_lines = rng.sample(USER_LINES, turns // 2)
    ai_lines = rng.sample(AI_LINES, turns // 2)
    for user, (strategy, ai) in zip(user_lines, ai_lines, strict=True):
        content.append({"User": fill(user)})
        content.append({"AI Strategy": strategy, "AI": fill(ai)})
    description = (f"Scripted description {variant}: since {rng.choice(THINGS)} {rng.choice(TIMES)} "
                   f"I have felt {rng.choice(FEELINGS)}, and {rng.choice(PEOPLE)} has noticed it.")  # fmt: skip
    return {"scene": scene, "description": description, "content": content}


@dataclass
class Reply:
    """What the server sends: a chat completion with `content`, or an error status."""

    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    finish_reason: str = "stop"


Script = Callable[[str, int, dict[str, Any]], Reply]


def example_seed(body: dict[str, Any]) -> dict[str, Any]:
    """The seed dialogue the prompt shows as its format example."""
    prompt = body["messages"][-1]["content"]
    start = prompt.index("## Example of the format")
    text = prompt[prompt.index("\n{", start) : prompt.index("\n\n## What to write")]
    return json.loads(text)


def as_json(record: dict[str, Any]) -> str:
    return json.dumps(record)


def default_script(scene: str, n: int, body: dict[str, Any]) -> Reply:
    """The behaviours the tests name by scenario; unknown scenarios get valid dialogues."""
    dialogue = valid_dialogue(scene, n)
    text = as_json(dialogue)
    if scene == "Fenced Scene":
        return Reply(f"```json\n{json.dumps(dialogue, indent=2)}\n```")
    if scene == "Prose Scene":
        return Reply(f"Sure! Here is the conversation you asked for:\n{text}\nI hope this helps.")
    if scene == "Labels Scene":
        labels = ["empathetic statements", "EV", "Reflective Statement", "Sugest Options",
                  "Avoid Judgement and Criticism", "Affirmation"]  # fmt: skip
        for item, label in zip((i for i in dialogue["content"] if "AI" in i), labels, strict=False):
            item["AI Strategy"] = label
        return Reply(as_json(dialogue))
    if scene == "Unknown Label Scene" and n == 0:
        dialogue["content"][1]["AI Strategy"] = "Radical Candour"
        return Reply(as_json(dialogue))
    if scene == "Truncated Scene" and n == 0:
        return Reply(text[: len(text) // 2], finish_reason="length")
    if scene == "Broken Scene":
        return Reply(text[: len(text) // 3], finish_reason="length")
    if scene == "Slow Scene" and n == 0:
        return Reply(text, delay_seconds=2.5)
    if scene == "Busy Scene" and n == 0:
        return Reply(status=429, headers={"Retry-After": "1"})
    if scene == "Flaky Scene" and n == 0:
        return Reply(status=500)
    if scene == "Duplicate Scene" and n < 2:
        return Reply(as_json(valid_dialogue(scene, 0)))
    if scene == "Seed Copy Scene" and n == 0:
        seed = example_seed(body)
        return Reply(as_json({**seed, "scene": scene}))
    if scene == "Unsafe Method Scene":
        dialogue["content"][3]["AI"] = (
            "If it gets bad, you could take 40 pills of your sleep medication."
        )
        return Reply(as_json(dialogue))
    if scene == "Therapist Scene" and n == 0:
        dialogue["content"][5]["AI"] = "As a licensed therapist, I can tell you this is normal."
        return Reply(as_json(dialogue))
    if scene == "Crisis Scene" and n == 0:
        dialogue["content"][2]["User"] = "I want to kill myself tonight."
        return Reply(as_json(dialogue))
    return Reply(text)


@dataclass
class Request:
    """One request as received."""

    scene: str
    index: int
    seed: int | None
    response_format: str | None
    at: float
    status: int


class ScriptedServer:
    """The server, in a daemon thread; `url` is its OpenAI base URL."""

    def __init__(
        self,
        script: Script = default_script,  # refuse_json_schema: the HTTP status to refuse it with
        *,
        refuse_json_schema: int | None = None,
        usage: tuple[int, int] | None = (1000, 500),
        delay_seconds: float = 0.0,
    ) -> None:
        self.script = script
        self.refuse_json_schema = refuse_json_schema
        self.usage = usage
        self.delay_seconds = delay_seconds
        self.requests: list[Request] = []
        self.examples: list[dict[str, Any]] = []  # the seed example each request showed
        self.per_scene: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL clients use."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def completions(self, scene: str | None = None) -> list[Request]:
        """Requests answered with a completion (status 200), optionally for one scene."""
        return [r for r in self.requests if r.status == 200 and scene in (None, r.scene)]

    def _answer(self, body: dict[str, Any]) -> Reply:
        prompt = body["messages"][-1]["content"]
        found = re.search(r"## Scenario\n(.+)\n", prompt)
        scene = found.group(1).strip() if found else "(none)"
        fmt = body.get("response_format") or {}
        with self._lock:
            if self.refuse_json_schema and fmt.get("type") == "json_schema":
                # as llama_cpp.server does (with status 500): the pydantic error names the field
                message = (
                    "('body', 'response_format', 'type'): Input should be 'text' or 'json_object'"
                )
                reply = Reply(message, status=self.refuse_json_schema)
            else:
                reply = self.script(scene, self.per_scene[scene], body)
                self.per_scene[scene] += 1
            self.examples.append(example_seed(body))
            self.requests.append(Request(scene, self.per_scene[scene], body.get("seed"),
                                         fmt.get("type"), time.monotonic(), reply.status))  # fmt: skip
        return reply

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        result: dict[str, Any] = {
            "id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                         "message": {"role": "assistant", "content": reply.content}}],
        }  # fmt: skip
        if self.usage is not None:
            p, c = self.usage
            result["usage"] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        return result

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)  # the client may have timed out and gone

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "scripted"}]}, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                reply = server._answer(body)
                time.sleep(reply.delay_seconds + server.delay_seconds)
                if reply.status != 200:
                    message = reply.content or f"scripted {reply.status}"
                    error = {"error": {"message": message, "type": "scripted"}}
                    self._send(reply.status, error, reply.headers)
                else:
                    self._send(200, server._completion(body, reply), reply.headers)

        return Handler


def write_config(tmp: Path, url: str, scenes: list[str], **settings: Any) -> Path:
    """A config and a scenario file for `scenes` under `tmp`; settings override the defaults."""
    scenario_file = tmp / "scenarios.toml"
    scenario_file.write_text("".join(
        f'[[scenario]]\nname = "{s}"\ndescription = "An example situation for {s}, for tests."\n\n'
        for s in scenes
    ))  # fmt: skip
    values: dict[str, Any] = {
        "model": "scripted", "base_url": url, "output_dir": str(tmp / "run"),
        "scenarios": str(scenario_file), "seeds": str(SEEDS), "per_scenario": 1,
        "timeout_seconds": 1.0, "backoff_seconds": 0.01, "concurrency": 4, "max_tokens": 500,
        "http_retries": 3,
    }  # fmt: skip
    values.update(settings)
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp / "synth.toml"
    path.write_text("\n".join(lines) + "\n\n[validation]\nmin_turns = 6\n")
    return path
