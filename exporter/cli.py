"""`solace export RUN_DIR`: a training run → GGUF (full or adapter-only), parity checks, card."""

from __future__ import annotations

from pathlib import Path

import click

from common.cli import set_option


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Export config TOML (configs/export/*.toml); defaults apply without one.",
)
@click.option(
    "--quant",
    "quants",
    multiple=True,
    metavar="TYPE",
    help="Quantized GGUF to write (repeatable): Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_1, ...; "
    "replaces the config's list.",
)
@click.option(
    "--adapter-only",
    is_flag=True,
    default=None,
    help="Write only a GGUF LoRA for the base GGUF (no merge, a few MB).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Output directory (default: RUN_DIR/export).",
)
@set_option("eval_dialogues=8")
@click.option("--no-verify", is_flag=True, help="Skip the parity checks (the card says so).")
def export(
    run_dir: Path,
    config_path: Path | None,
    quants: tuple[str, ...],
    adapter_only: bool | None,
    out_dir: Path | None,
    overrides: tuple[str, ...],
    no_verify: bool,
) -> None:
    """Turn a training run into GGUF files llama.cpp (and the bot) runs, and prove parity.

    Reads RUN_DIR/manifest.json, merges the LoRA into the 16/32-bit base, converts with
    llama.cpp's convert_hf_to_gguf.py (`make tools`), quantizes, checks tokenization,
    perplexity and greedy agreement against the HF model, and writes a model card and
    manifest.json. Finished steps are skipped when run again. Exits non-zero when a parity
    check fails.
    """
    from exporter.config import ExportConfigError, ExportError, load_config, read_run_manifest
    from exporter.pipeline import run_export

    extra = list(overrides)
    if quants:
        extra.append("quants=[" + ", ".join(f'"{q.upper()}"' for q in quants) + "]")
    if adapter_only:
        extra.append("adapter_only=true")
    if no_verify:
        extra.append("verify=false")
    try:
        cfg = load_config(config_path, extra)
        run = read_run_manifest(run_dir)
        manifest = run_export(run, cfg, out_dir or run_dir / "export", echo=click.echo)
    except (ExportConfigError, ExportError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"export manifest: {manifest}")
