"""The `solace` command line: one click group whose subcommands load lazily.

Each subcommand lives in the module that owns it and is imported only when it runs (or when
`--help` lists it), so `solace --help` stays instant and the bot never imports torch.
"""

from __future__ import annotations

import importlib
import logging
import os

import click

# name -> "module:attribute". Importing the module must be cheap (heavy imports go inside the
# command bodies).
LAZY_COMMANDS: dict[str, str] = {
    "chat": "bot.adapters.console:chat",
    "serve": "bot.serve:serve",
    "migrate": "bot.migrate:migrate",
    "memory": "bot.memory.cli:memory",
    "data": "dialogue.cli:data",
    "safety": "bot.safety.cli:safety",
    "eval": "evaluation.cli:eval_group",
    "train": "trainer.cli:train",
    "export": "exporter.cli:export",
    "audit": "bot.audit.cli:audit",
    "health": "bot.ops.cli:health",
    "backup": "bot.ops.cli:backup",
    "restore": "bot.ops.cli:restore",
    "discord": "bot.adapters.discord_cli:discord",
    "web": "bot.web.cli:web",
}

# Subcommands another package adds to a group owned elsewhere: group -> {name: "module:attr"}.
# The group's module stays unaware of them (synthesis sits above dialogue in the layers).
LAZY_SUBCOMMANDS: dict[str, dict[str, str]] = {
    "data": {"synthesize": "synthesis.cli:synthesize", "review": "synthesis.cli:review"},
}


def _load_command(target: str) -> click.Command:
    module_name, attr = target.split(":")
    command = getattr(importlib.import_module(module_name), attr)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is needed."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            command = _load_command(self._lazy[cmd_name])
            if isinstance(command, click.Group):
                for name, target in LAZY_SUBCOMMANDS.get(cmd_name, {}).items():
                    if name not in command.commands:
                        command.add_command(_load_command(target), name)
            return command
        return super().get_command(ctx, cmd_name)


def configure_logging(verbose: int) -> None:
    """Set up logging once, in main. Log lines carry keyed ids (bot.logs), lengths and timings,
    never message text; `solace serve` also blanks tokens in every record (bot.serve)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    for noisy in ("httpx", "httpcore", "telegram", "discord", "apscheduler", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@click.group(
    cls=LazyGroup, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="solace")
def cli(verbose: int) -> None:
    """Solace: an emotional-support chatbot and the kit that builds its model."""
    configure_logging(verbose + int(os.environ.get("SOLACE_VERBOSE", "0") or 0))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="solace")


if __name__ == "__main__":
    main()
