"""`solace data synthesize` and `solace data review` (registered on the `solace data` group by
bot.cli). Importing this module costs only click; the pipeline loads inside the commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from common.cli import set_option


def _load(config: str, overrides: tuple[str, ...]) -> Any:
    from synthesis.config import SynthConfigError, load_config

    try:
        return load_config(config, overrides)
    except SynthConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _scenarios(cfg: Any) -> Any:
    from synthesis.scenarios import ScenarioError, default_scenarios, load_scenarios, select

    try:
        found = load_scenarios(cfg.scenarios) if cfg.scenarios else default_scenarios()
        return select(found, cfg.only_scenarios)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from exc


def _round_number(store: Any, round_no: int | None, next_round: bool) -> int:
    rounds = store.rounds()
    if next_round:
        return (rounds[-1] + 1) if rounds else 1
    return round_no or (rounds[-1] if rounds else 1)


def _print_estimate(cfg: Any, plan: Any, est: dict[str, float], spent: float) -> None:
    click.echo(
        f"round {plan.round_no}: {est['slots']} dialogues to write ({len(plan.scenarios)} "
        f"scenarios, target {cfg.per_scenario} each); {len(plan.seeds)} seed examples from "
        f"{plan.seed_source}; model {cfg.model} at {cfg.base_url or 'api.openai.com'}"
    )
    click.echo(
        f"~{est['prompt_tokens_per_request']:,} prompt tokens per request; estimated cost "
        f"${est['usd_one_answer_each']:.4f} with one answer each, at most "
        f"${est['usd_worst_case']:.4f} if every attempt runs to max_tokens "
        f"(prompt tokens estimated as characters / 4)"
    )
    click.echo(f"spent so far ${spent:.4f} of the ${cfg.budget_usd:.2f} budget (a hard cap)")


def _progress(total: int, initial: int, enabled: bool) -> tuple[Any, Any]:
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, unit="dialogue", disable=not enabled, leave=True)

    def update(summary: Any) -> None:
        bar.n = summary.done + summary.failed
        bar.set_postfix(candidates=summary.done, failed=summary.failed, answers=summary.answers)
        bar.refresh()

    return bar, update


async def _run_round(cfg: Any, store: Any, plan: Any, key: str | None, update: Any) -> Any:
    from dialogue.strategies import EXTES_STRATEGIES
    from synthesis.client import EndpointClient
    from synthesis.pipeline import RoundRunner
    from synthesis.template import response_schema

    schema = response_schema(list(EXTES_STRATEGIES))
    client = EndpointClient(cfg, store, plan.round_no, key, schema)
    try:
        return await RoundRunner(cfg, store, plan, client, update).run()
    finally:
        await client.aclose()


def _print_summary(summary: Any, manifest: dict[str, Any], run_dir: Path) -> None:
    click.echo(
        f"round {summary.round_no}: {summary.done} of {summary.slots} dialogues waiting for or "
        f"past review, {summary.failed} slots failed, {summary.pending} still to do; "
        f"{summary.answers} answers ({summary.cached} from the cache) this run"
    )
    entry = next(r for r in manifest["rounds"] if r["round"] == summary.round_no)
    for reason, count in entry["rejection_reasons"].items():
        click.echo(f"  rejected {count:>6}  {reason}")
    for name, count in entry["counters"].items():
        click.echo(f"  counted  {count:>6}  {name}")
    click.echo(
        f"spent ${manifest['cost']['usd']:.4f} in all; manifest: {run_dir / 'manifest.json'}"
    )
    if entry["review"]["pending"]:
        click.echo(f"next: review them with `solace data review {run_dir}`")


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=str))
@set_option("per_scenario=5")
@click.option(
    "--round", "round_no", type=click.IntRange(1), help="Round to run (default: the latest)."
)
@click.option(
    "--next-round",
    is_flag=True,
    help="Start the next round, seeded by the last one's accepted dialogues.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan and cost estimate, send nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before spending money.")
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."
)
def synthesize(
    config: str, overrides: tuple[str, ...], round_no: int | None, next_round: bool,
    dry_run: bool, yes: bool, progress: bool,
) -> None:  # fmt: skip
    """Grow an ExTES-style data set by self-chat, as CONFIG (configs/synth/*.toml) describes.

    Each answer is validated, repaired or rejected (every reason counted), safety-screened and
    de-duplicated; the survivors wait in a review queue (`solace data review RUN_DIR`). Only
    reviewed dialogues enter RUN_DIR/dialogues.json. Rerunning the same command continues an
    interrupted round; answers already received come from the cache and cost nothing.
    """
    import asyncio

    from synthesis.output import STORE_FILE, write_outputs
    from synthesis.pipeline import PipelineError, estimate, plan_round
    from synthesis.store import RunStore

    cfg = _load(config, overrides)
    scenarios = _scenarios(cfg)
    run_dir = cfg.run_dir()
    key = os.environ.get(cfg.api_key_env) or None
    if not cfg.is_local and key is None and not dry_run:
        raise click.ClickException(f"set ${cfg.api_key_env} to the endpoint's API key")
    store = RunStore(run_dir / STORE_FILE)
    try:
        number = _round_number(store, round_no, next_round)
        try:
            plan = plan_round(cfg, store, number, scenarios)
        except PipelineError as exc:
            raise click.ClickException(str(exc)) from exc
        existing = {(s.scenario, s.slot): s.status for s in store.slots(number)}
        targets = [(s.name, i) for s in scenarios for i in range(cfg.per_scenario)]
        finished = sum(existing.get(t, "pending") != "pending" for t in targets)
        _print_estimate(
            cfg, plan, estimate(cfg, plan, len(targets) - finished), store.spend()["usd"]
        )
        if dry_run:
            return
        if cfg.prices != (0.0, 0.0) and not yes:
            click.confirm("Send the requests?", abort=True)
        store.set_meta("config", cfg.model_dump())
        bar, update = _progress(len(targets), finished, progress)
        try:
            summary = asyncio.run(_run_round(cfg, store, plan, key, update))
        except KeyboardInterrupt:
            write_outputs(store, run_dir)
            raise click.ClickException(
                "interrupted; run the same command again to continue"
            ) from None
        finally:
            bar.close()
        manifest = write_outputs(store, run_dir)
        _print_summary(summary, manifest, run_dir)
        if summary.stopped:
            raise click.ClickException(
                f"stopped early ({summary.stopped}); run the same command again to continue"
            )
    finally:
        store.close()


def _ask(prompt: str) -> str:
    try:
        return str(click.prompt(prompt, default="", show_default=False))
    except click.Abort:  # end of input: stop, keeping every decision made so far
        return "q"


def _editor(text: str) -> str | None:
    return click.edit(text, extension=".json", require_save=True)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--round", "round_no", type=click.IntRange(1), help="Only this round.")
@click.option("--limit", type=click.IntRange(1), help="Review at most N dialogues now.")
@click.option("--list", "list_only", is_flag=True, help="Print the queue's counts and stop.")
def review(run_dir: Path, round_no: int | None, limit: int | None, list_only: bool) -> None:
    """Review generated dialogues: accept, edit ($EDITOR, re-checked by every gate) or reject.

    Only accepted and edited dialogues enter RUN_DIR/dialogues.json; the next round
    (`solace data synthesize CONFIG --next-round`) uses them as its seed examples.
    """
    from synthesis.config import ValidationConfig
    from synthesis.output import STORE_FILE, write_outputs
    from synthesis.review import ReviewQueue, page
    from synthesis.store import RunStore

    if not (run_dir / STORE_FILE).is_file():
        raise click.ClickException(
            f"{run_dir}: no {STORE_FILE}; run `solace data synthesize` first"
        )
    store = RunStore(run_dir / STORE_FILE)
    try:
        config = store.get_meta("config") or {}
        queue = ReviewQueue(store, ValidationConfig.model_validate(config.get("validation", {})))
        for number in store.rounds():
            if round_no in (None, number):
                counts = ", ".join(f"{k} {v}" for k, v in queue.counts(number).items())
                click.echo(f"round {number}: {counts}")
        if list_only:
            return
        candidates = queue.pending(round_no)[:limit]
        if not candidates:
            click.echo("nothing to review")
        try:
            decisions = page(queue, candidates, echo=click.echo, ask=_ask, editor=_editor)
        finally:  # every decision is stored as it is made; the files follow even on an error
            manifest = write_outputs(store, run_dir)
        made = ", ".join(f"{k} {v}" for k, v in sorted(decisions.items())) or "none"
        click.echo(f"decisions: {made}; {manifest['output']['dialogues']} dialogues in "
                   f"{run_dir / 'dialogues.json'}")  # fmt: skip
    finally:
        store.close()
