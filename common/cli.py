"""The `--set KEY=VALUE` option of every pipeline command (train, export, eval, data synthesize).

One option, one grammar (`common.configfile.parse_override`): dotted keys reach into sections,
values are TOML (`--set lora_r=8`, `--set name='my run'`, `--set metrics.skip=["bertscore"]`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def set_option(example: str) -> Callable[[Any], Any]:
    """The click option, collecting the overrides as `overrides`; `example` is one KEY=VALUE."""
    return click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"Override a config key, VALUE read as TOML, e.g. --set {example} (repeatable).",
    )
