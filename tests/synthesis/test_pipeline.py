"""`solace data synthesize` and `solace data review` end to end against a scripted
OpenAI-compatible server on 127.0.0.1 (tests/servers/synth.py): every behaviour counted, nothing
invalid or unsafe written, review and rounds, a crash mid-run, the budget cap, structured-output
fallback and an unreachable endpoint (issue 22)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bot.cli import cli
from dialogue.datasets import load_path
from synthesis.config import ValidationConfig
from synthesis.records import record_turns
from synthesis.store import RunStore
from synthesis.validate import Validator
from tests.paths import ROOT
from tests.servers.synth import ScriptedServer, write_config

pytest.importorskip("openai")
pytest.importorskip("datasketch")

BEHAVIOURS = [
    "Valid Scene", "Fenced Scene", "Prose Scene", "Labels Scene", "Unknown Label Scene",
    "Truncated Scene", "Broken Scene", "Slow Scene", "Busy Scene", "Flaky Scene",
    "Seed Copy Scene", "Unsafe Method Scene", "Therapist Scene", "Crisis Scene",
]  # fmt: skip
UNSAFE_TEXTS = ("40 pills", "licensed therapist", "kill myself")


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["data", *args], input=input, env=env)


def manifest(tmp: Path) -> dict[str, Any]:
    return json.loads((tmp / "run" / "manifest.json").read_text())


def run_files_text(run_dir: Path) -> bytes:
    """Every byte the run left on disk (store, WAL, outputs)."""
    return b"".join(p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file())


def test_every_behaviour_is_counted_and_nothing_invalid_is_queued(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        cfg = write_config(tmp_path, server.url, BEHAVIOURS)
        result = run("synthesize", str(cfg), "--no-progress")
    assert result.exit_code == 0, result.output
    entry = manifest(tmp_path)["rounds"][0]
    assert entry["rejection_reasons"] == {
        "truncated_json": 4, "unsafe_supporter": 4, "seeker_crisis": 1, "copies_seed": 1,
        "strategy_unknown": 1,
    }  # fmt: skip
    assert entry["rejection_details"]["unsafe_supporter:guard:method"] == 3
    assert entry["rejection_details"]["unsafe_supporter:guard:identity_claim"] == 1
    assert entry["rejection_details"]["seeker_crisis:user_turn:suicide"] == 1
    assert entry["slots"] == {"done": 12, "failed": 2, "total": 14}
    assert entry["per_scenario"]["Broken Scene"] == {"failed": 1}
    assert entry["answers"] == 12 + 11  # every answer is a candidate or a counted rejection
    repairs = entry["repairs"]
    assert repairs["code_fence"] == 1 and repairs["surrounding_prose"] >= 1
    assert repairs["strategy_variant"] >= 4 and repairs["strategy_close_match"] == 1
    counters = entry["counters"]
    assert counters["http_429"] == 1 and counters["http_500"] == 1 and counters["timeout"] == 1
    assert entry["review"] == {"pending": 12, "accepted": 0, "edited": 0, "rejected": 0}
    # the 429 said Retry-After: 1, and the retry came no sooner
    busy = [r for r in server.requests if r.scene == "Busy Scene"]
    assert [r.status for r in busy] == [429, 200] and busy[1].at - busy[0].at >= 0.95
    assert {r.response_format for r in server.requests} == {"json_schema"}
    # every queued dialogue passes the gates again; nothing unsafe is anywhere on disk
    store = RunStore(tmp_path / "run" / "synth.db")
    validator = Validator(ValidationConfig(min_turns=6))
    candidates = store.candidates()
    assert len(candidates) == 12
    for candidate in candidates:
        assert validator.check_edit(candidate.record, candidate.scenario).ok, candidate.id
    store.close()
    on_disk = run_files_text(tmp_path / "run")
    for text in UNSAFE_TEXTS:
        assert text.encode() not in on_disk, text
    assert json.loads((tmp_path / "run" / "dialogues.json").read_text()) == []


def test_near_duplicates_are_rejected_and_asked_again(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        cfg = write_config(tmp_path, server.url, ["Duplicate Scene"], per_scenario=2)
        result = run("synthesize", str(cfg), "--no-progress")
        assert result.exit_code == 0, result.output
        assert len(server.completions("Duplicate Scene")) == 3
    entry = manifest(tmp_path)["rounds"][0]
    assert entry["rejection_reasons"] == {"near_duplicate": 1}
    assert entry["slots"] == {"done": 2, "total": 2}
    # a rerun asks nothing more and adds no duplicate
    with ScriptedServer() as server:
        write_config(tmp_path, server.url, ["Duplicate Scene"], per_scenario=2)
        assert run("synthesize", str(cfg), "--no-progress").exit_code == 0
        assert server.requests == []


EDITOR = """
import json, sys
path = sys.argv[1]
record = json.load(open(path))
if record["scene"] == "Prose Scene":
    record["content"][1]["AI"] = "As a licensed therapist, I can diagnose you."
else:
    record["content"][1]["AI"] = "Edited by the reviewer: " + record["content"][1]["AI"]
json.dump(record, open(path, "w"))
"""


def test_review_accept_edit_reject_then_the_next_round(tmp_path: Path) -> None:
    scenes = ["Valid Scene", "Fenced Scene", "Prose Scene", "Labels Scene"]
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    env = {"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""}
    with ScriptedServer() as server:
        cfg = write_config(tmp_path, server.url, scenes, concurrency=1)
        assert run("synthesize", str(cfg), "--no-progress").exit_code == 0
        run_dir = str(tmp_path / "run")
        # Valid: accept; Fenced: edit; Prose: an unsafe edit is refused, then reject; Labels: skip
        result = run("review", run_dir, input="a\ne\ne\nr\ns\n", env=env)
        assert result.exit_code == 0, result.output
        assert "the edit fails a gate: unsafe_supporter" in result.output
        assert "decisions: accepted 1, edited 1, rejected 1, skipped 1" in result.output
        output = json.loads((tmp_path / "run" / "dialogues.json").read_text())
        assert [r["synthetic"]["review"] for r in output] == ["accepted", "edited"]
        assert output[1]["content"][1]["AI"].startswith("Edited by the reviewer: ")
        assert b"licensed therapist" not in run_files_text(tmp_path / "run")
        loaded = load_path(tmp_path / "run" / "dialogues.json")
        assert len(loaded.dialogues) == 2 and loaded.report.rejected == 0
        stats = run("stats", str(tmp_path / "run" / "dialogues.json"))
        assert (
            "beside the ExTES paper" in stats.output
            and "| dialogues | 2 | 11,177 |" in stats.output
        )
        # the next round waits for the skipped dialogue's review
        refused = run("synthesize", str(cfg), "--next-round", "--no-progress")
        assert refused.exit_code == 1 and "waiting for review" in refused.output
        assert run("review", run_dir, input="r\n", env=env).exit_code == 0
        assert (
            "round 1: pending 0, accepted 1, edited 1, rejected 2"
            in run("review", run_dir, "--list").output
        )
        round_one = len(server.requests)
        result = run("synthesize", str(cfg), "--next-round", "--no-progress")
        assert result.exit_code == 0, result.output
    examples = {r["description"] for r in output}
    round_two = server.examples[round_one:]
    assert len(round_two) == 4
    assert all(example["description"] in examples for example in round_two)
    rounds = manifest(tmp_path)["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert (
        rounds[1]["seeds"]["source"] == "round 1 accepted" and len(rounds[1]["seeds"]["ids"]) == 2
    )


def test_a_crash_mid_run_resumes_without_paying_twice(tmp_path: Path) -> None:
    scenes = [f"Crash Scene {n}" for n in range(6)]
    with ScriptedServer(delay_seconds=0.3) as server:
        cfg = write_config(tmp_path, server.url, scenes, concurrency=1)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "data", "synthesize", str(cfg), "--no-progress"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while len(server.completions()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        store = RunStore(tmp_path / "run" / "synth.db")
        statuses = [s.status for s in store.slots(1)]
        store.close()
        assert 2 <= statuses.count("done") < 6 and "pending" in statuses
        before = len(server.completions())
        result = run("synthesize", str(cfg), "--no-progress")
        assert result.exit_code == 0, result.output
        per_scene = [len(server.completions(s)) for s in scenes]
    entry = manifest(tmp_path)["rounds"][0]
    assert entry["slots"] == {"done": 6, "total": 6}
    # only the request in flight at the kill was sent again
    assert sum(per_scene) <= 6 + 1 and max(per_scene) <= 2 and before <= sum(per_scene)
    assert len({c["record"]["description"] for c in _candidates(tmp_path)}) == 6


def _candidates(tmp: Path) -> list[dict[str, Any]]:
    store = RunStore(tmp / "run" / "synth.db")
    try:
        return [{"id": c.id, "record": c.record} for c in store.candidates()]
    finally:
        store.close()


def test_the_budget_is_a_hard_cap(tmp_path: Path) -> None:
    scenes = [f"Paid Scene {n}" for n in range(5)]
    priced = {"price_input_per_mtok": 1000.0, "price_output_per_mtok": 1000.0, "budget_usd": 4.5}
    with ScriptedServer(usage=(1000, 500)) as server:
        cfg = write_config(tmp_path, server.url, scenes, concurrency=2, **priced)
        declined = run("synthesize", str(cfg), "--no-progress", input="n\n")
        assert declined.exit_code == 1 and "Aborted" in declined.output
        assert server.requests == []
        # each answer costs $1.50; each request reserves ~$2.1 (prompt + max_tokens) first
        result = run("synthesize", str(cfg), "--no-progress", "--yes")
        assert result.exit_code == 1 and "stopped early (budget" in result.output
        assert len(server.requests) == 2
        cost = manifest(tmp_path)["cost"]
        assert cost["usd"] == pytest.approx(3.0) and cost["usd"] <= cost["budget_usd"]
        result = run("synthesize", str(cfg), "--no-progress", "--yes", "--set", "budget_usd=100")
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 5
    assert manifest(tmp_path)["cost"]["usd"] == pytest.approx(7.5)
    assert manifest(tmp_path)["rounds"][0]["slots"] == {"done": 5, "total": 5}


@pytest.mark.parametrize("status", [400, 422, 500])
def test_a_refused_json_schema_steps_down(tmp_path: Path, status: int) -> None:
    with ScriptedServer(refuse_json_schema=status) as server:
        cfg = write_config(tmp_path, server.url, ["Valid Scene", "Fenced Scene"], concurrency=1)
        result = run("synthesize", str(cfg), "--no-progress")
        assert result.exit_code == 0, result.output
        formats = [(r.response_format, r.status) for r in server.requests]
    assert formats == [("json_schema", status), ("json_object", 200), ("json_object", 200)]
    assert (
        manifest(tmp_path)["rounds"][0]["counters"]["json_mode_fallback_to_json_object_schema"] == 1
    )
    (tmp_path / "fixed").mkdir()
    with ScriptedServer(refuse_json_schema=status) as server:
        cfg = write_config(tmp_path / "fixed", server.url, ["Valid Scene"], json_mode="json_schema")
        result = run("synthesize", str(cfg), "--no-progress")
    assert result.exit_code == 1 and f"refused the request (HTTP {status})" in result.output
    assert "json_mode = 'auto'" in result.output


def test_an_unreachable_endpoint_stops_the_run_cleanly(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    scenes = [f"Scene {n}" for n in range(4)]
    cfg = write_config(tmp_path, url, scenes, http_retries=1, abort_after_endpoint_failures=2,
                       concurrency=1)  # fmt: skip
    result = run("synthesize", str(cfg), "--no-progress")
    assert result.exit_code == 1 and "stopped early (endpoint" in result.output
    entry = manifest(tmp_path)["rounds"][0]
    assert entry["slots"] == {"pending": 4, "total": 4}
    assert entry["counters"]["connection_error"] == 4  # 2 slots x (1 try + 1 retry)


def test_a_started_round_refuses_a_changed_plan_and_bad_inputs_are_clear(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        cfg = write_config(tmp_path, server.url, ["Valid Scene"])
        assert run("synthesize", str(cfg), "--no-progress").exit_code == 0
        changed = run("synthesize", str(cfg), "--set", "model=other", "--no-progress")
        assert (
            changed.exit_code == 1
            and "round 1 was started with a different model" in changed.output
        )
        bad_seeds = tmp_path / "unlabelled.json"
        bad_seeds.write_text(json.dumps([{"content": [{"User": "hi"}, {"AI": "hello"}]}]))
        result = run("synthesize", str(cfg), "--set", f"seeds={json.dumps(str(bad_seeds))}",
                     "--set", f"output_dir={json.dumps(str(tmp_path / 'other'))}")  # fmt: skip
        assert result.exit_code == 1 and "no usable seed dialogue" in result.output
        result = run("synthesize", str(cfg), "--set", "seeds=nowhere.json",
                     "--set", f"output_dir={json.dumps(str(tmp_path / 'other'))}")  # fmt: skip
        assert result.exit_code == 1 and "seeds:" in result.output
    missing = run("synthesize", str(tmp_path / "missing.toml"))
    assert missing.exit_code == 1 and "config file not found" in missing.output
    assert "no synth.db" in run("review", str(tmp_path)).output
    remote = tmp_path / "remote.toml"
    remote.write_text('model = "m"\nbase_url = "https://api.example.org/v1"\nprice_input_per_mtok = 1\n'
                      "price_output_per_mtok = 1\napi_key_env = \"SOLACE_TEST_UNSET_KEY\"\n")  # fmt: skip
    result = run("synthesize", str(remote), env={"SOLACE_TEST_UNSET_KEY": ""})
    assert result.exit_code == 1 and "set $SOLACE_TEST_UNSET_KEY" in result.output


def test_dry_run_prints_the_plan_and_sends_nothing(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        cfg = write_config(tmp_path, server.url, ["Valid Scene", "Fenced Scene"], per_scenario=3,
                           price_input_per_mtok=0.15, price_output_per_mtok=0.6)  # fmt: skip
        result = run("synthesize", str(cfg), "--dry-run")
        assert server.requests == []
    assert result.exit_code == 0, result.output
    assert "round 1: 6 dialogues to write (2 scenarios, target 3 each)" in result.output
    assert "estimated cost $" in result.output and "of the $10.00 budget" in result.output


@pytest.mark.data
def test_the_extes_fragment_gives_one_seed_example(data_dir: Path, tmp_path: Path) -> None:
    from synthesis.config import SynthConfig
    from synthesis.pipeline import plan_round
    from synthesis.scenarios import default_scenarios

    cfg = SynthConfig(model="m", base_url="http://127.0.0.1:1/v1", seeds="extes:all")
    store = RunStore(tmp_path / "synth.db")
    plan = plan_round(cfg, store, 1, default_scenarios())
    store.close()
    assert [d.id for d in plan.seeds] == ["extes:ExTES:0"]
    assert plan.seeds_excluded == {"strategies_unlabelled": 10}


def test_help_is_instant_and_lists_the_commands() -> None:
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom bot.cli import cli\n"
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0\n"
        "r = CliRunner().invoke(cli, ['data', '--help']); assert r.exit_code == 0, r.output\n"
        "assert 'synthesize' in r.output and 'review' in r.output\n"
        "heavy = ['openai', 'datasketch', 'torch', 'llama_cpp', 'tqdm', 'synthesis.pipeline',"
        " 'bot.safety.patterns']\n"  # the compiled crisis rules (bot.safety itself is lazy)
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"
    for command in ("synthesize", "review"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output and len(result.output) > 300


def test_review_queue_api_refuses_unknown_ids(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "synth.db")
    with pytest.raises(KeyError, match="no candidate"):
        store.decide("r1:x:0", "accepted")
    store.close()


def test_turns_of_stored_records() -> None:
    turns = record_turns({"content": [{"User": "hi"}, {"AI Strategy": "", "AI": "hello"}]})
    assert [(t.role, t.strategy) for t in turns] == [("user", None), ("assistant", None)]
