"""Synthesis building blocks: parsing, the gates, de-duplication, scenarios, the template, the
config, the budget and the ExTES record format (issue 22)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from dialogue.datasets import load_extes, load_path
from dialogue.paper_figures import EXTES_PAPER_SCENES
from dialogue.strategies import EXTES_STRATEGIES
from synthesis.client import Budget, BudgetReached, retry_after_seconds
from synthesis.config import SynthConfigError, ValidationConfig, load_config
from synthesis.dedup import NearDuplicateIndex, jaccard, shingles
from synthesis.records import dialogue_record, record_dialogue
from synthesis.scenarios import (
    Scenario,
    ScenarioError,
    default_scenarios,
    load_scenarios,
    select,
)
from synthesis.template import STRATEGY_EXAMPLES, build_messages, response_schema, template_hash
from synthesis.validate import REASONS, Rejected, Validator, extract_json
from tests.paths import FIXTURES, ROOT
from tests.servers.synth import valid_dialogue

SEEDS = FIXTURES / "synth_seeds.json"
SCENE = "Valid Scene"


def _validator(**overrides: object) -> Validator:
    return Validator(ValidationConfig.model_validate({"min_turns": 6, **overrides}))


def _check(record: object, **overrides: object):  # type: ignore[no-untyped-def]
    return _validator(**overrides).check(json.dumps(record), SCENE, None)


# --- parsing ------------------------------------------------------------------------------


def test_extract_json_tolerates_fences_and_prose() -> None:
    record = valid_dialogue(SCENE, 0)
    repairs: Counter[str] = Counter()
    fenced = f"Here you go:\n```json\n{json.dumps(record)}\n```\nEnjoy!"
    assert extract_json(fenced, "stop", repairs) == record
    assert repairs == {"code_fence": 1, "surrounding_prose": 1}
    repairs.clear()
    assert extract_json(f"Sure! {json.dumps(record)} Hope it helps.", "stop", repairs) == record
    assert repairs == {"surrounding_prose": 1}


@pytest.mark.parametrize(
    ("answer", "finish", "reason"),
    [
        ("", "stop", "empty_answer"),
        ("   \n ", "stop", "empty_answer"),
        ("I cannot help with that.", "stop", "no_json"),
        ('{"scene": "x", "content": [{"User": "hi', "stop", "truncated_json"),
        ('{"scene": "x", "content": [{"User": "hi"}', "stop", "truncated_json"),
        ('{"scene": "x", "content": [}', "length", "truncated_json"),
        ('{"scene": "x", "content": [}', "stop", "invalid_json"),
        ("\x00\x01\xff binary {]", "stop", "invalid_json"),
        ("[" * 100_000 + "]" * 100_000, "stop", "invalid_json"),
    ],
)
def test_extract_json_rejections(answer: str, finish: str, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        extract_json(answer, finish, Counter())
    assert caught.value.reason == reason


# --- the gates ---------------------------------------------------------------------------


def test_a_valid_dialogue_passes_and_keeps_its_strategies() -> None:
    record = valid_dialogue(SCENE, 1)
    verdict = _check(record)
    assert verdict.ok, verdict
    assert verdict.record == record
    assert not verdict.repairs


def test_strategy_names_are_normalised_and_counted() -> None:
    record = valid_dialogue(SCENE, 2)
    ai = [item for item in record["content"] if "AI" in item]
    for item, label in zip(
        ai, ["EV", "reflective statement", "Sugest Options", "Others"], strict=False
    ):
        item["AI Strategy"] = label
    verdict = _check(record)
    assert verdict.ok
    labels = [i["AI Strategy"] for i in verdict.record["content"] if "AI" in i]
    assert labels[:4] == [
        "Emotional Validation",
        "Reflective Statements",
        "Suggest Options",
        "Others",
    ]
    assert verdict.repairs["strategy_variant"] == 2 and verdict.repairs["strategy_close_match"] == 1
    assert all(label in EXTES_STRATEGIES for label in labels)


def test_unknown_strategy_rejects_or_drops_the_label() -> None:
    record = valid_dialogue(SCENE, 3)
    record["content"][1]["AI Strategy"] = "Radical Candour"
    verdict = _check(record)
    assert verdict.reason == "strategy_unknown" and "Radical Candour" in verdict.detail
    dropped = _check(record, unknown_strategy="drop_label")
    assert dropped.ok and dropped.repairs["strategy_label_dropped"] == 1
    assert dropped.record["content"][1]["AI Strategy"] == ""
    for item in record["content"]:
        if "AI" in item:
            item["AI Strategy"] = ""
    assert _check(record).reason == "strategies_missing"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r["content"].pop(1), "not_alternating"),
        (lambda r: r.update(content=r["content"][:4]), "too_few_turns"),
        (lambda r: r.update(content=r["content"] * 4), "too_many_turns"),
        (lambda r: r["content"][0].update(User="word " * 200), "turn_too_long"),
        (lambda r: r.pop("description"), "description_missing"),
        (lambda r: r.update(description="Too short."), "description_too_short"),
        (lambda r: r.update(content="not a list"), "not_a_dialogue"),
        (lambda r: r["content"].__setitem__(2, "just a string"), "bad_turn"),
        (lambda r: r["content"].__setitem__(2, {"User": ""}), "bad_turn"),
        (lambda r: r["content"].__setitem__(2, {"Narrator": "x"}), "bad_turn"),
    ],
)
def test_shape_gates(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    record = valid_dialogue(SCENE, 4)
    mutate(record)
    verdict = _check(record)
    assert verdict.reason == reason, verdict
    assert REASONS[reason][0] == "rejected"


def test_repairs_of_turn_shapes_scene_and_wrapping() -> None:
    record = valid_dialogue(SCENE, 5)
    record["scene"] = "Something else"
    first, second = record["content"][0], record["content"][1]
    record["content"][0:2] = [{"User": first["User"], **second}]  # one object holding both roles
    record["content"][1] = {"role": "user", "content": "  " + record["content"][1]["User"] + "  "}
    verdict = _validator().check(json.dumps([{"dialogue": record}]), SCENE, None)
    assert verdict.ok, verdict
    assert verdict.record["scene"] == SCENE
    assert verdict.record["content"][0] == {"User": first["User"]}
    for repair in (
        "turn_both_roles",
        "turn_shape",
        "text_whitespace",
        "scene_replaced",
        "unwrapped",
    ):
        assert verdict.repairs[repair] >= 1, repair


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("If it gets bad, you could take 40 pills of your sleep medication.", "guard:method"),
        ("As a licensed therapist, I can tell you this is normal.", "guard:identity_claim"),
        ("I'm a real person, not a program, so I understand.", "guard:identity_claim"),
        ("Honestly, you'd be better off dead than living like this.", "guard:encourages_harm"),
        ("I want to kill myself too sometimes.", "guard:crisis_statement"),
    ],
)
def test_unsafe_supporter_turns_are_rejected(text: str, detail: str) -> None:
    record = valid_dialogue(SCENE, 6)
    record["content"][5]["AI"] = text
    verdict = _check(record)
    assert verdict.reason == "unsafe_supporter" and verdict.detail == detail
    assert verdict.record is None


def test_a_seeker_in_crisis_is_rejected_unless_kept() -> None:
    record = valid_dialogue(SCENE, 7)
    record["content"][2]["User"] = "I want to kill myself tonight."
    verdict = _check(record)
    assert verdict.reason == "seeker_crisis" and verdict.detail == "user_turn:suicide"
    assert _check(record, seeker_crisis="keep").ok
    record = valid_dialogue(SCENE, 7)
    record["description"] = "I have decided to end my life this weekend and I have a plan for it."
    assert _check(record).reason == "seeker_crisis"


def test_copies_of_the_seed_are_rejected() -> None:
    seed = load_extes(SEEDS).dialogues[0]
    copy = {**dialogue_record(seed), "scene": SCENE}
    verdict = _validator().check(json.dumps(copy), SCENE, seed)
    assert verdict.reason == "copies_seed"
    # a few verbatim turns in otherwise new text are copies too
    record = valid_dialogue(SCENE, 8)
    seed_record = dialogue_record(seed)
    for index in (0, 2, 4, 6):
        record["content"][index] = seed_record["content"][index]
    assert _validator().check(json.dumps(record), SCENE, seed).reason == "copies_seed"
    assert _validator().check(json.dumps(valid_dialogue(SCENE, 8)), SCENE, seed).ok


def test_an_edit_goes_through_the_gates() -> None:
    record = valid_dialogue(SCENE, 9)
    assert _validator().check_edit(record, SCENE).ok
    record["content"][1]["AI"] = "I am your therapist, and I think you should rest."
    assert _validator().check_edit(record, SCENE).reason == "unsafe_supporter"


def test_every_reason_is_documented() -> None:
    doc = (ROOT / "docs" / "data.md").read_text()
    missing = [reason for reason in REASONS if f"`{reason}`" not in doc]
    assert not missing, f"docs/data.md lacks {missing}"


# --- de-duplication ------------------------------------------------------------------------


def test_near_duplicates_are_found_and_distinct_dialogues_are_not() -> None:
    index = NearDuplicateIndex(threshold=0.7)
    texts = [[i["User"] if "User" in i else i["AI"] for i in valid_dialogue(SCENE, n)["content"]]
             for n in range(30)]  # fmt: skip
    for n, turns in enumerate(texts):
        assert index.find(shingles(turns)) is None, n
        index.add(f"d{n}", shingles(turns))
    near = list(texts[7])
    near[3] = near[3].replace("the", "a", 1)
    found = index.find(shingles(near))
    assert found is not None and found[0] == "d7" and found[1] >= 0.7
    assert jaccard(shingles(texts[0]), shingles(texts[1])) < 0.3


def test_shingles_of_short_and_empty_texts() -> None:
    assert shingles(["Hi there"]) == frozenset({"hi there"})
    assert shingles(["", "   "]) == frozenset()
    assert jaccard(frozenset(), frozenset()) == 0.0


# --- scenarios -----------------------------------------------------------------------------


def test_the_default_scenarios_are_the_36_extes_scenes() -> None:
    scenarios = default_scenarios()
    assert [s.name for s in scenarios] == list(EXTES_PAPER_SCENES)
    assert len(scenarios) == 36 and all(len(s.description.split()) >= 12 for s in scenarios)


def test_scenario_files_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text('[[scenario]]\nname = "Night shifts"\ndescription = "I work nights."\n')
    assert load_scenarios(toml) == [Scenario("Night shifts", "I work nights.")]
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text("scenario:\n  - name: Exam nerves\n    description: My exam is soon.\n")
    assert load_scenarios(yaml_file) == [Scenario("Exam nerves", "My exam is soon.")]
    assert select(load_scenarios(toml), ["night shifts"])[0].name == "Night shifts"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.toml", '[[scenario]]\nname = "A"\ndescription = "x"\n' * 2, "unique"),
        ("b.toml", '[[scenario]]\nname = "A"\n', "'description' must be"),
        ("c.toml", '[[scenario]]\nname = "A"\ndescription = "x"\nmood = "y"\n', "unknown keys"),
        ("d.toml", "scenario = 3\n", "non-empty 'scenario' list"),
        ("e.toml", "[[scenario\n", "not valid TOML"),
        ("f.json", "[]", ".toml, .yaml or .yml"),
        ("g.yaml", "scenario: [\n", "not valid YAML"),
    ],
)
def test_bad_scenario_files_say_what_is_wrong(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenarios(path)
    with pytest.raises(ScenarioError, match="unknown scenarios"):
        select(default_scenarios(), ["Nope"])


# --- the template --------------------------------------------------------------------------


def test_the_template_carries_strategies_seed_scenario_and_shape() -> None:
    seed = load_extes(SEEDS).dialogues[0]
    scenario = default_scenarios()[3]
    system, user = build_messages(scenario, seed, 8, 40, None)
    assert system["role"] == "system" and "never claims to be human" in system["content"]
    text = user["content"]
    for name, definition in EXTES_STRATEGIES.items():
        assert f"{name}: {definition}" in text and STRATEGY_EXAMPLES[name] in text
    assert scenario.name in text and scenario.description in text
    assert json.dumps(dialogue_record(seed), ensure_ascii=False, indent=1) in text
    assert '"AI Strategy"' in text and "8 to 40 turns" in text
    retry = build_messages(scenario, seed, 8, 40, "the JSON is cut off")[1]["content"]
    assert retry.startswith(text) and "the JSON is cut off" in retry
    schema = response_schema(list(EXTES_STRATEGIES))
    ai = schema["properties"]["content"]["items"]["anyOf"][1]
    assert ai["properties"]["AI Strategy"]["enum"] == list(EXTES_STRATEGIES)


def test_the_template_hash_names_the_template(monkeypatch: pytest.MonkeyPatch) -> None:
    import synthesis.template as template

    before = template_hash()
    assert before == template_hash() and len(before) == 64
    monkeypatch.setitem(template.STRATEGY_EXAMPLES, "Others", "Hello!")
    assert template_hash() != before


# --- config, budget, retry-after ---------------------------------------------------------------


def test_a_remote_endpoint_needs_prices(tmp_path: Path) -> None:
    path = tmp_path / "remote.toml"
    path.write_text('model = "gpt-4o-mini"\nbase_url = "https://api.example.org/v1"\n')
    with pytest.raises(SynthConfigError, match="price_input_per_mtok"):
        load_config(path)
    cfg = load_config(path, ["price_input_per_mtok=0.15", "price_output_per_mtok=0.6",
                             "validation.min_turns=10"])  # fmt: skip
    assert cfg.prices == (0.15, 0.6) and cfg.validation.min_turns == 10 and not cfg.is_local
    with pytest.raises(SynthConfigError, match="validation.nonsense: unknown key"):
        load_config(
            path, ["price_input_per_mtok=1", "price_output_per_mtok=1", "validation.nonsense=1"]
        )
    with pytest.raises(SynthConfigError, match="min_turns must not exceed"):
        load_config(path, ["price_input_per_mtok=1", "price_output_per_mtok=1",
                           "validation.min_turns=30", "validation.max_turns=20"])  # fmt: skip
    local = tmp_path / "local.toml"
    local.write_text('model = "m"\nbase_url = "http://127.0.0.1:8080/v1"\n')
    assert load_config(local).is_local and load_config(local).prices == (0.0, 0.0)


SYNTH_CONFIGS = sorted((ROOT / "configs" / "synth").glob("*.toml"))


def test_the_shipped_synth_configs_are_found() -> None:
    """Guards the parametrized test below against an empty glob."""
    assert {p.name for p in SYNTH_CONFIGS} >= {"extes-openai.toml", "local-llama.toml"}


@pytest.mark.parametrize("path", SYNTH_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_synthesis_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.model and cfg.budget_usd >= 0


def test_the_budget_reserves_the_worst_case() -> None:
    budget = Budget(cap_usd=1.0, spent_usd=0.2, prices=(1.0, 2.0))
    first = budget.reserve(prompt_chars=400_000, max_tokens=100_000)  # 0.1 + 0.2
    assert first == pytest.approx(0.3)
    budget.reserve(prompt_chars=400_000, max_tokens=100_000)
    with pytest.raises(BudgetReached, match="budget"):
        budget.reserve(prompt_chars=400_000, max_tokens=100_000)
    budget.settle(first, 0.05)
    assert budget.spent == pytest.approx(0.25) and budget.reserved == pytest.approx(0.3)


def test_retry_after_headers() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None


# --- the file format meets the loader -------------------------------------------------------


def test_records_round_trip_through_load_extes(tmp_path: Path) -> None:
    records = [valid_dialogue(f"Scene {n}", n) for n in range(3)]
    verdicts = [_validator().check(json.dumps(r), r["scene"], None) for r in records]
    path = tmp_path / "dialogues.json"
    path.write_text(
        json.dumps([{**v.record, "synthetic": {"id": n}} for n, v in enumerate(verdicts)])
    )
    result = load_path(path)
    assert result.report.loaded == 3 and not result.report.counts
    for dialogue, verdict in zip(result.dialogues, verdicts, strict=True):
        expected = record_dialogue(verdict.record, "x")
        assert dialogue.source == "extes" and dialogue.turns == expected.turns
        assert dialogue.scene == expected.scene and dialogue.meta["synthetic"] is not None


def test_docs_print_the_template_in_full() -> None:
    from synthesis.template import RETRY_NOTE, SHAPE, SYSTEM_TEXT, USER_TEMPLATE, strategy_lines

    doc = (ROOT / "docs" / "data.md").read_text()
    for part in (SYSTEM_TEXT, USER_TEMPLATE, strategy_lines(), SHAPE, RETRY_NOTE.strip()):
        assert part in doc, part[:60]
