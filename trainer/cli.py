"""`solace train`: fine-tune a model from a TOML config (heavy imports inside the body)."""

from __future__ import annotations

import os

import click

from common.cli import set_option


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=str))
@set_option("max_steps=20")
@click.option("--resume", is_flag=True, help="Continue the run from its newest checkpoint.")
def train(config: str, overrides: tuple[str, ...], resume: bool) -> None:
    """Fine-tune a model as CONFIG (configs/train/*.toml) describes (LoRA, adaption prompt, full).

    Writes the weights (adapter/ or model/), tokenizer, data statistics, loss history/curve and manifest.json to the
    config's output_dir (default runs/<name>). Ctrl-C saves a checkpoint; --resume continues it.
    """
    # Passive OpenMP waits: spinning threads make torch ~10x slower on a busy, shared CPU.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from trainer.config import TrainConfigError, load_config
    from trainer.data import DataError
    from trainer.devices import DeviceError
    from trainer.methods import MethodError
    from trainer.model import ModelError
    from trainer.train import TrainError, train as run_training

    try:
        cfg = load_config(config, overrides)
        run_training(cfg, resume=resume, echo=click.echo)
    except (TrainConfigError, DataError, DeviceError, MethodError, ModelError, TrainError) as exc:
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":  # `accelerate launch -m trainer.cli CONFIG` runs one process each
    train()
